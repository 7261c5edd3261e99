namespace Spa.Silo.Tests;

/// <summary>
/// Hugging Face chat templates as published with their models, rendered as <c>transformers</c> renders them
/// (trim_blocks, lstrip_blocks), and the Jinja they are written in.
/// </summary>
public sealed class JinjaTemplateTests
{
    /// <summary>meta-llama/Llama-2-7b-chat-hf's chat_template.</summary>
    public const string Llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
        "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}" +
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
        "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
        "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    /// <summary>HuggingFaceH4/zephyr-7b-beta's, one statement per line as published.</summary>
    private const string Zephyr = """
        {% for message in messages %}
        {% if message['role'] == 'user' %}
        {{ '<|user|>
        ' + message['content'] + eos_token }}
        {% elif message['role'] == 'system' %}
        {{ '<|system|>
        ' + message['content'] + eos_token }}
        {% elif message['role'] == 'assistant' %}
        {{ '<|assistant|>
        '  + message['content'] + eos_token }}
        {% endif %}
        {% if loop.last and add_generation_prompt %}
        {{ '<|assistant|>' }}
        {% endif %}
        {% endfor %}
        """;

    /// <summary>ChatML, as Qwen and OpenHermes publish it.</summary>
    private const string ChatMl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static Dictionary<string, object?> Chat(params (string Role, string Content)[] messages) => new()
    {
        ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
        ["add_generation_prompt"] = true,
        ["bos_token"] = "<s>",
        ["eos_token"] = "</s>",
    };

    [Fact]
    public void PublishedTemplatesRenderAsTransformersRendersThem()
    {
        var conversation = Chat(("system", "Be kind."), ("user", "Hi"), ("assistant", " Hello. "), ("user", "Tell a story"));
        Assert.Equal("<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Tell a story [/INST]", JinjaTemplate.Parse(Llama2).Render(conversation));
        Assert.Equal("<|system|>\nBe kind.</s>\n<|user|>\nHi</s>\n<|assistant|>\n Hello. </s>\n<|user|>\nTell a story</s>\n<|assistant|>\n",
            JinjaTemplate.Parse(Zephyr).Render(conversation));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", JinjaTemplate.Parse(ChatMl).Render(Chat(("user", "Hi"))));
    }

    [Fact]
    public void ATemplatesRaiseExceptionRefusesTheConversation()
    {
        var error = Assert.Throws<TemplateException>(() => JinjaTemplate.Parse(Llama2).Render(Chat(("user", "a"), ("user", "b"))));
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", error.Message);
    }

    [Theory]
    [InlineData("{{ 'a' ~ 1 ~ none }}", "a1None")]
    [InlineData("{%- if true -%}  x  {%- endif -%}", "x")]
    [InlineData("{% for x in [1, 2, 3] %}{{ loop.index }}{% if not loop.last %},{% endif %}{% endfor %}", "1,2,3")]
    [InlineData("{{ [1, 2, 3, 4][1:3] | length }} {{ 'abcdef'[-2:] }} {{ 'xyz'[0] }}", "2 ef x")]
    [InlineData("{{ 'yes' if 'b' in ['a', 'b'] else 'no' }}{{ ' no' if 'z' not in 'abc' else ' yes' }}", "yes no")]
    [InlineData("{{ missing is defined }} {{ missing | default('d') }} {{ none is none }}", "False d True")]
    [InlineData("{% set d = {'k': 'v'} %}{% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %} {{ d.k | upper }}", "k=v V")]
    [InlineData("{{ '  pad  ' | trim }}|{{ ' x '.strip() }}|{{ 'Ab'.lower() }}|{{ 'abc'.startswith('ab') }}", "pad|x|ab|True")]
    [InlineData("{{ 7 // 2 }} {{ 7 % 3 }} {{ 2 * 3 + 1 }} {{ -1 + 3 }} {{ 1 < 2 and 2 >= 2 }}", "3 1 7 2 True")]
    [InlineData("{% set x = 1 %}{% for i in [5] %}{% set x = 9 %}{% set y = 2 %}{% endfor %}{{ x }}{{ y is defined }}", "1False")]
    [InlineData("{# a comment #}{{ {'a': [1]} | tojson }}", "{\"a\":[1]}")]
    [InlineData("  {% if true %}\n  x\n  {% endif %}\ny", "  x\ny")]
    public void TheJinjaChatTemplatesUseIsEvaluatedAsJinjaDoes(string template, string expected) =>
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>()));

    [Theory]
    [InlineData("{% macro m() %}x{% endmacro %}", "{% macro %} is not supported")]
    [InlineData("{{ x | wordcount }}", "the filter 'wordcount' is not supported")]
    [InlineData("{{ x is odd }}", "the test 'is odd' is not supported")]
    [InlineData("{% if x %}unclosed", "without {% endif %}")]
    [InlineData("{{ x ", "never closed")]
    public void WhatIsNotSupportedIsRefusedWhenParsed(string template, string reason) =>
        Assert.Contains(reason, Assert.Throws<FormatException>(() => JinjaTemplate.Parse(template)).Message);
}
