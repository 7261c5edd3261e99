using Spa.Model.Tokenizers;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>Which chat template a model gets, and how LLaMA-2's format lays out a conversation.</summary>
public sealed class ChatTemplateTests : IDisposable
{
    private const string Llama2Jinja = "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}" +
        "{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}{% endif %}{% endfor %}";

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
    public void TheTemplateComesFromTheOptionElseTheCheckpoint()
    {
        Assert.Same(ChatTemplate.Plain, ChatTemplate.Resolve(null, SharedData.Stories260K));
        Assert.Same(ChatTemplate.Llama2, ChatTemplate.Resolve("llama-2", SharedData.Stories260K));

        File.WriteAllText(Path.Combine(_folder, "config.json"), "{}");
        var none = ChatTemplate.Resolve(null, _folder);
        Assert.Contains("no chat template", none.Unavailable);
        Assert.Contains("--chat-template", Assert.Throws<ApiError>(() => none.Render([new("user", "Hi")], Tokenizer)).Message);

        var config = Path.Combine(_folder, "tokenizer_config.json");
        File.WriteAllText(config, System.Text.Json.JsonSerializer.Serialize(new { chat_template = Llama2Jinja }));
        Assert.Same(ChatTemplate.Llama2, ChatTemplate.Resolve(null, _folder));
        Assert.Same(ChatTemplate.Llama2, ChatTemplate.Resolve(config, SharedData.Stories260K));

        File.WriteAllText(config, """{"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"}""");
        Assert.Contains("other than LLaMA-2's", ChatTemplate.Resolve(null, _folder).Unavailable);
        Assert.Contains("cannot run", Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve(config, SharedData.Stories260K)).Message);
        Assert.Contains("neither plain, llama-2 nor a file", Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve("chatml", SharedData.Stories260K)).Message);
    }
}
