using System.Text.Json;

namespace Spa.Model.Checkpoints;

/// <summary>
/// The config.json of a Hugging Face LLaMA checkpoint, mapped to and from <see cref="LlamaConfig"/>. Options that would
/// change the computation in ways this model does not implement are refused rather than ignored.
/// </summary>
public static class HuggingFaceConfig
{
    public const string FileName = "config.json";

    public static LlamaConfig Read(string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not valid JSON ({e.Message})", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path} is not a JSON object");
            var json = new Fields(root, path);

            json.Refuse("model_type", v => v.ValueKind == JsonValueKind.String && v.GetString() != "llama", "only the llama architecture is supported");
            json.Refuse("rope_scaling", v => v.ValueKind != JsonValueKind.Null, "RoPE scaling is not supported");
            json.Refuse("hidden_act", v => v.ValueKind != JsonValueKind.String || v.GetString() != "silu", "only the silu activation is supported");
            json.Refuse("attention_bias", v => v.ValueKind == JsonValueKind.True, "attention biases are not supported");
            json.Refuse("mlp_bias", v => v.ValueKind == JsonValueKind.True, "MLP biases are not supported");

            int dim = json.Int("hidden_size");
            int heads = json.Int("num_attention_heads");
            json.Refuse("head_dim", v => v.ValueKind != JsonValueKind.Null && !(v.TryGetInt32(out int h) && heads > 0 && h * heads == dim),
                "a head_dim other than hidden_size / num_attention_heads is not supported");

            var config = new LlamaConfig(
                Dim: dim,
                HiddenDim: json.Int("intermediate_size"),
                Layers: json.Int("num_hidden_layers"),
                Heads: heads,
                KvHeads: json.Int("num_key_value_heads", heads),
                VocabSize: json.Int("vocab_size"),
                MaxSeqLen: json.Int("max_position_embeddings"),
                // Hugging Face's LlamaConfig defaults: untied, eps 1e-6.
                TiedEmbedding: json.Bool("tie_word_embeddings", false),
                Rope: RopeStyle.RotateHalf,
                RopeTheta: json.Double("rope_theta", 10000.0),
                NormEps: json.Double("rms_norm_eps", 1e-6),
                BosId: json.TokenId("bos_token_id", 1),
                EosId: json.TokenId("eos_token_id", 2));
            try
            {
                config.Validate();
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"{path}: {e.Message}", e);
            }
            return config;
        }
    }

    public static void Write(string path, LlamaConfig config, SafetensorsDtype stored = SafetensorsDtype.F32)
    {
        if (config.Rope != RopeStyle.RotateHalf)
            throw new ArgumentException("a Hugging Face checkpoint uses rotate-half RoPE; permute q and k before writing it", nameof(config));
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteStartArray("architectures");
        json.WriteStringValue("LlamaForCausalLM");
        json.WriteEndArray();
        json.WriteString("model_type", "llama");
        json.WriteNumber("hidden_size", config.Dim);
        json.WriteNumber("intermediate_size", config.HiddenDim);
        json.WriteNumber("num_hidden_layers", config.Layers);
        json.WriteNumber("num_attention_heads", config.Heads);
        json.WriteNumber("num_key_value_heads", config.KvHeads);
        json.WriteNumber("vocab_size", config.VocabSize);
        json.WriteNumber("max_position_embeddings", config.MaxSeqLen);
        json.WriteNumber("rms_norm_eps", config.NormEps);
        json.WriteNumber("rope_theta", config.RopeTheta);
        json.WriteNull("rope_scaling");
        json.WriteString("hidden_act", "silu");
        json.WriteBoolean("tie_word_embeddings", config.TiedEmbedding);
        json.WriteNumber("bos_token_id", config.BosId);
        json.WriteNumber("eos_token_id", config.EosId);
        json.WriteString("torch_dtype", SafetensorsFile.TorchName(stored));
        json.WriteEndObject();
    }

    /// <summary>The config in config.json's own terms, for error messages about tensors that disagree with it.</summary>
    internal static string Describe(LlamaConfig c) =>
        $"hidden_size {c.Dim}, intermediate_size {c.HiddenDim}, num_hidden_layers {c.Layers}, num_attention_heads {c.Heads}, "
        + $"num_key_value_heads {c.KvHeads}, vocab_size {c.VocabSize}, tie_word_embeddings {(c.TiedEmbedding ? "true" : "false")}";

    /// <summary>Typed access to config.json fields with messages that name the file and the field.</summary>
    private readonly struct Fields(JsonElement root, string path)
    {
        public int Int(string name) =>
            Get(name) is { } v ? AsInt(name, v) : throw new InvalidDataException($"{path} has no \"{name}\"");

        public int Int(string name, int fallback) => Get(name) is { } v ? AsInt(name, v) : fallback;

        public double Double(string name, double fallback) =>
            Get(name) is not { } v ? fallback
            : v.ValueKind == JsonValueKind.Number ? v.GetDouble()
            : throw Wrong(name, v, "a number");

        public bool Bool(string name, bool fallback) =>
            Get(name) is not { } v ? fallback
            : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
            : throw Wrong(name, v, "true or false");

        /// <summary>Newer configs may list several end tokens; <see cref="LlamaConfig"/> holds one, so the first is used.</summary>
        public int TokenId(string name, int fallback) =>
            Get(name) is not { } v ? fallback
            : v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 ? AsInt(name, v[0])
            : AsInt(name, v);

        public void Refuse(string name, Func<JsonElement, bool> unsupported, string why)
        {
            if (root.TryGetProperty(name, out var v) && unsupported(v))
                throw new InvalidDataException($"{path}: \"{name}\" is {v.GetRawText()}; {why}");
        }

        // A null field means "not set", as Hugging Face treats it.
        private JsonElement? Get(string name) =>
            root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        private int AsInt(string name, JsonElement v) =>
            v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Wrong(name, v, "an integer");

        private InvalidDataException Wrong(string name, JsonElement v, string expected) =>
            new($"{path}: \"{name}\" is {v.GetRawText()}, expected {expected}");
    }
}
