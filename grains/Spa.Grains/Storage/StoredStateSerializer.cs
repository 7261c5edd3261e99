using System.Buffers;
using Orleans.Serialization;
using Orleans.Storage;

namespace Spa.Grains.Storage;

/// <summary>The format grain state is written in; both are always read.</summary>
public enum StoredStateFormat
{
    /// <summary>Orleans' binary format, behind <see cref="StoredStateSerializer.BinaryMark"/>.</summary>
    Binary,

    /// <summary>The JSON of the silo's default serializer (Json.NET), as versions before the binary format wrote.</summary>
    Json,
}

/// <summary>
/// How sessions, devices and stream subscriptions are written to grain storage: by default in Orleans' binary format,
/// by the serializers generated for the state types, behind a one-byte mark. Orleans' default is JSON through Json.NET,
/// and a session is written after every token: with 64 concurrent sessions those writes took most of the Orleans
/// threads' CPU (BENCHMARKS.md, cluster). Either format is read, whichever is written, so state that earlier versions
/// wrote as JSON stays readable, and a cluster can move from one format to the other silo by silo.
/// </summary>
public sealed class StoredStateSerializer(Serializer binary, IGrainStorageSerializer json, StoredStateFormat writes) : IGrainStorageSerializer
{
    /// <summary>The first byte of the binary format; a JSON document never starts with it.</summary>
    public const byte BinaryMark = 0;

    public BinaryData Serialize<T>(T? input)
    {
        if (writes == StoredStateFormat.Json) return json.Serialize(input);
        var output = new ArrayBufferWriter<byte>();
        output.Write([BinaryMark]);
        binary.Serialize(input, output);
        return new BinaryData(output.WrittenMemory);
    }

    public T? Deserialize<T>(BinaryData input)
    {
        var bytes = input.ToMemory();
        return bytes.Span is [BinaryMark, ..] ? binary.Deserialize<T>(bytes[1..]) : json.Deserialize<T>(input);
    }
}
