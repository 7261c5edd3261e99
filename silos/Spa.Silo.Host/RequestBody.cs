using System.Text.Json;
using System.Text.Unicode;

namespace Spa.Silo;

/// <summary>
/// Reads a request's JSON body for the endpoints, refusing with a reason what the parser would otherwise turn into a
/// server fault or a waste of work: a body over <see cref="MaxBytes"/> (413), bytes that are not UTF-8, and JSON that
/// does not parse (400).
/// </summary>
internal static class RequestBody
{
    /// <summary>
    /// 1 MiB: far more than any prompt a served context can hold (a token is at most a few dozen bytes), and small
    /// enough that a hostile body costs neither much memory nor a long tokenization before it is refused.
    /// </summary>
    public const int MaxBytes = 1 << 20;

    public static async Task<JsonDocument> ReadJsonAsync(HttpContext context)
    {
        var request = context.Request;
        if (request.ContentLength > MaxBytes) throw TooLarge(request.ContentLength.Value);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            // Stops reading at the limit when no Content-Length announced the size (chunked transfer).
            if (buffer.Length + read > MaxBytes) throw TooLarge(null);
            buffer.Write(chunk, 0, read);
        }
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        // Checked here because the JSON reader leaves string contents to be transcoded later, where invalid UTF-8
        // surfaces as an InvalidOperationException from deep inside request validation.
        if (!Utf8.IsValid(bytes.Span)) throw ApiError.BadRequest("the request body is not valid UTF-8");
        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
    }

    /// <summary>
    /// A string the JSON text cannot give as UTF-16 (a lone surrogate escape such as "\ud800"): the reader throws
    /// InvalidOperationException when the value is read, which is the client's fault, not the server's.
    /// </summary>
    public static ApiError Unreadable(InvalidOperationException e) => ApiError.BadRequest($"the request body holds a string that cannot be read: {e.Message}");

    private static ApiError TooLarge(long? length) => new(StatusCodes.Status413PayloadTooLarge,
        $"the request body {(length is { } n ? $"has {n} bytes" : "is larger than the limit")}: at most {MaxBytes} bytes are accepted", code: "request_too_large");
}
