using Spa.Model.Tokenizers;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>Which chat template a model gets, and how LLaMA-2's format lays out a conversation.</summary>
public sealed class ChatTemplateTests : IDisposable
{
    private static readonly ITokenizer Tokenizer = TokenizerLoader.Load(SharedData.Tok512, 512);
    private readonly string _folder = Directory.CreateTempSubdirectory("spa-chat-template-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void Llama2TurnsAreInstBlocksAfterBosWithEachAnswerEndedByEos()
    {
        var tokens = ChatTemplate.Llama2.Render(
            [new("system", "Be kind."), new("user", "Hi"), new("assistant", " Hello there. "), new("user", "Tell a story")], Tokenizer);
        IEnumerable<int> expected =
        [
            .. Tokenizer.Encode("[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST]", bos: true, eos: false),
            .. Tokenizer.Encode("Hello there.", bos: false, eos: true),
            .. Tokenizer.Encode("[INST] Tell a story [/INST]", bos: true, eos: false),
        ];
        Assert.Equal(expected, tokens);
    }

    [Fact]
    public void Llama2RefusesAConversationItsFormatCannotHold()
    {
        var outOfTurn = Assert.Throws<ApiError>(() => ChatTemplate.Llama2.Render([new("user", "a"), new("user", "b")], Tokenizer));
        Assert.Contains("in turn", outOfTurn.Message);
        var endsWithAnswer = Assert.Throws<ApiError>(() => ChatTemplate.Llama2.Render([new("user", "a"), new("assistant", "b")], Tokenizer));
        Assert.Contains("last message must be the user's", endsWithAnswer.Message);
    }

    [Fact]
    public void PlainIsTheMessagesTextOnePerLine() =>
        Assert.Equal(Tokenizer.Encode("Be kind.\nOnce upon a time", bos: true, eos: false),
            ChatTemplate.Plain.Render([new("system", "Be kind."), new("user", "Once upon a time")], Tokenizer));

    [Fact]
    public void AHuggingFaceTemplateRendersWithTheSpecialTokensAsTokens()
    {
        var config = Path.Combine(_folder, "tokenizer_config.json");
        File.WriteAllText(config, System.Text.Json.JsonSerializer.Serialize(new { chat_template = JinjaTemplateTests.Llama2, bos_token = new { content = "<s>" }, eos_token = "</s>" }));
        var template = ChatTemplate.Resolve(null, _folder);
        Assert.Null(template.Unavailable);
        IEnumerable<int> expected =
        [
            Tokenizer.BosId, .. Tokenizer.Encode("[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello. ", bos: false, eos: false), Tokenizer.EosId,
            Tokenizer.BosId, .. Tokenizer.Encode("[INST] Tell a story [/INST]", bos: false, eos: false),
        ];
        Assert.Equal(expected, template.Render([new("system", "Be kind."), new("user", "Hi"), new("assistant", "Hello."), new("user", "Tell a story")], Tokenizer));
        var refused = Assert.Throws<ApiError>(() => template.Render([new("user", "a"), new("user", "b")], Tokenizer));
        Assert.Equal(("messages", 400), (refused.Param, refused.Status));
        Assert.Contains("Conversation roles must alternate", refused.Message);
    }

    [Fact]
    public void TheTemplateComesFromTheOptionElseTheCheckpoint()
    {
        Assert.Same(ChatTemplate.Plain, ChatTemplate.Resolve(null, SharedData.Stories260K));
        Assert.Same(ChatTemplate.Llama2, ChatTemplate.Resolve("llama-2", SharedData.Stories260K));

        File.WriteAllText(Path.Combine(_folder, "config.json"), "{}");
        var none = ChatTemplate.Resolve(null, _folder);
        Assert.Contains("no chat template", none.Unavailable);
        Assert.Contains("--chat-template", Assert.Throws<ApiError>(() => none.Render([new("user", "Hi")], Tokenizer)).Message);

        var config = Path.Combine(_folder, "tokenizer_config.json");
        File.WriteAllText(config, """{"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ messages[0].content }}"}]}""");
        Assert.Equal(Tokenizer.Encode("Hi", bos: false, eos: false), ChatTemplate.Resolve(null, _folder).Render([new("user", "Hi")], Tokenizer));
        Assert.Equal(Tokenizer.Encode("Hi", bos: false, eos: false), ChatTemplate.Resolve(config, SharedData.Stories260K).Render([new("user", "Hi")], Tokenizer));

        File.WriteAllText(config, """{"chat_template": "{% macro turn(m) %}{{ m.content }}{% endmacro %}"}""");
        Assert.Contains("cannot run ({% macro %} is not supported)", ChatTemplate.Resolve(null, _folder).Unavailable);
        Assert.Contains("cannot run", Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve(config, SharedData.Stories260K)).Message);
        Assert.Contains("neither plain, llama-2 nor a file", Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve("chatml", SharedData.Stories260K)).Message);
    }
}
