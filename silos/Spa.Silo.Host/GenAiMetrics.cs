using System.Diagnostics;
using System.Diagnostics.Metrics;
using Spa.Grains;

namespace Spa.Silo;

/// <summary>
/// The serving metrics under the names and buckets of OpenTelemetry's GenAI semantic conventions, which dashboards and
/// alerts for LLM servers already use: time to first token, time per output token after the first, request duration
/// and token usage, with <c>gen_ai.operation.name</c> (<c>text_completion</c> or <c>chat</c>),
/// <c>gen_ai.provider.name</c>, <c>gen_ai.request.model</c> and, for a failed request, <c>error.type</c>. Beside them,
/// on the same meter, what the conventions do not name: finish reasons and the time a request waited for admission.
/// </summary>
public sealed class GenAiMetrics
{
    private readonly Histogram<double> _firstToken, _perOutputToken, _duration, _queued;
    private readonly Histogram<long> _tokens;
    private readonly Counter<long> _finished;

    public GenAiMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(SpaTelemetry.MeterName);
        _firstToken = meter.CreateHistogram("gen_ai.server.time_to_first_token", "s", "Time to generate the first token for successful responses.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0] });
        _perOutputToken = meter.CreateHistogram("gen_ai.server.time_per_output_token", "s", "Time per output token generated after the first token for successful responses.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5] });
        _duration = meter.CreateHistogram("gen_ai.server.request.duration", "s", "Generative AI server request duration such as time-to-last byte or last output token.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92] });
        _tokens = meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used, per request.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864] });
        _finished = meter.CreateCounter<long>("spa_finish_reasons", description: "Choices finished, by finish_reason (stop, length, cancelled) and gen_ai.operation.name.");
        _queued = meter.CreateHistogram("spa_admission_wait", "s", "Time an HTTP completion waited for admission before it ran (or was refused).", advice: SpaTelemetry.Seconds);
    }

    /// <summary>A request answered in full: its first token after <paramref name="firstToken"/>, its last after <paramref name="duration"/>.</summary>
    public void Succeeded(string operation, string model, TimeSpan firstToken, TimeSpan duration, int promptTokens, int outputTokens, IEnumerable<string> finishReasons)
    {
        var tags = Tags(operation, model);
        _firstToken.Record(firstToken.TotalSeconds, tags);
        if (outputTokens > 1) _perOutputToken.Record((duration - firstToken).TotalSeconds / (outputTokens - 1), tags);
        _duration.Record(duration.TotalSeconds, tags);
        var input = tags;
        input.Add("gen_ai.token.type", "input");
        _tokens.Record(promptTokens, input);
        var output = tags;
        output.Add("gen_ai.token.type", "output");
        _tokens.Record(outputTokens, output);
        foreach (var reason in finishReasons)
        {
            var finished = new TagList { { "finish_reason", reason }, { "gen_ai.operation.name", operation } };
            _finished.Add(1, finished);
        }
    }

    /// <summary>A request refused or failed, with a low-cardinality <paramref name="errorType"/> (the error's code, else its status).</summary>
    public void Failed(string operation, string model, TimeSpan duration, string errorType)
    {
        var tags = Tags(operation, model);
        tags.Add("error.type", errorType);
        _duration.Record(duration.TotalSeconds, tags);
    }

    public void AdmissionWait(TimeSpan waited) => _queued.Record(waited.TotalSeconds);

    private static TagList Tags(string operation, string model) =>
        new() { { "gen_ai.operation.name", operation }, { "gen_ai.provider.name", SpaTelemetry.GenAiProvider }, { "gen_ai.request.model", model } };
}
