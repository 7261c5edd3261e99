using System.Diagnostics;
using Spa.Grains.Abstractions;
using Spa.Model;
using static TorchSharp.torch;

namespace Spa.Grains;

/// <summary>
/// The layer hook of a shard forward over sessions whose plugin sits inside the base (lora, adapter): at each point
/// where the plugin acts, every such row's activations go to its own device, one round trip per row, and the forward
/// continues with the answers. It runs on the torch worker, which waits for the devices: that wait is what a split
/// plugin costs every token, and why the method keeps its plugin beside the base instead. A row whose device fails
/// goes on without the plugin (zero LoRA deltas, adapters as the identity), is not asked again in this forward, and
/// is marked degraded; the session's fallback policy decides what that means.
/// </summary>
public sealed class RemoteLayerHook : ILayerHook
{
    private readonly IGrainFactory _grains;
    private readonly (string Session, SplitEdge? Edge)[] _rows;
    private readonly int _dim, _loraWidth;
    private readonly EdgeCounter[] _counters;

    public RemoteLayerHook(IGrainFactory grains, IReadOnlyList<ShardStepRequest> rows, LlamaConfig config)
    {
        _grains = grains;
        _rows = rows.Select(r => (r.SessionId, r.Edge)).ToArray();
        _dim = config.Dim;
        _loraWidth = config.Dim + config.KvHeads * config.HeadDim; // delta q, then delta v
        _counters = [.. rows.Select(r => new EdgeCounter(r.RecordRoundTrips))];
    }

    /// <summary>What row <paramref name="row"/>'s device cost in this forward; null for a row without a split plugin.</summary>
    public EdgeUsage? Usage(int row) => _rows[row].Edge is null ? null
        : _counters[row].ToUsage();

    public (Tensor Query, Tensor Value)? AttentionDelta(int layer, Tensor normalisedInput)
    {
        if (!_rows.Any(r => r.Edge?.Mode == SessionMode.Lora)) return null;
        var deltas = Ask(EdgeCallKind.LoraAttention, SessionMode.Lora, layer, normalisedInput, keepInput: false);
        return (deltas.narrow(-1, 0, _dim), deltas.narrow(-1, _dim, deltas.size(-1) - _dim));
    }

    public Tensor AfterAttention(int layer, Tensor output) =>
        _rows.Any(r => r.Edge?.Mode == SessionMode.Adapter) ? Ask(EdgeCallKind.AdapterAttention, SessionMode.Adapter, layer, output, keepInput: true) : output;

    public Tensor AfterMlp(int layer, Tensor output) =>
        _rows.Any(r => r.Edge?.Mode == SessionMode.Adapter) ? Ask(EdgeCallKind.AdapterMlp, SessionMode.Adapter, layer, output, keepInput: true) : output;

    /// <summary>
    /// x: [B, T, dim]. Each row of the mode asks its device with its [T, dim] block; the answers form [B, T, width].
    /// Rows that do not ask keep their input (keepInput) or get zeros.
    /// </summary>
    private Tensor Ask(EdgeCallKind call, SessionMode mode, int layer, Tensor x, bool keepInput)
    {
        int rows = (int)x.size(0), positions = (int)x.size(1), block = positions * _dim;
        var input = HostCopy.Rows(x); // [T * dim] per row
        var calls = new Task<(int Row, float[]? Output)>[rows];
        for (int b = 0; b < rows; b++)
        {
            bool asks = _rows[b].Edge?.Mode == mode && !_counters[b].Degraded;
            calls[b] = asks ? AskOne(b, call, layer, new Activations(input[b], [positions, _dim]))
                : Task.FromResult<(int, float[]?)>((b, null));
        }
        // The torch worker waits here: the forward cannot go on without the devices' answers.
        var answers = Task.WhenAll(calls).GetAwaiter().GetResult();
        int width = call == EdgeCallKind.LoraAttention ? _loraWidth : _dim;
        var result = new float[rows * positions * width];
        foreach (var (row, output) in answers)
        {
            if (output is not null && output.Length == positions * width) output.CopyTo(result, row * positions * width);
            else
            {
                if (output is not null) _counters[row].Degrade($"the device answered {output.Length} values where {positions * width} were due");
                if (keepInput) input[row].CopyTo(result, row * block);
            }
        }
        return tensor(result, [(long)rows, positions, width]).to(x.dtype, x.device);
    }

    private async Task<(int Row, float[]? Output)> AskOne(int row, EdgeCallKind call, int layer, Activations input)
    {
        var (session, edge) = _rows[row];
        var watch = Stopwatch.StartNew();
        try
        {
            var answer = await _grains.GetGrain<IEdgeDeviceGrain>(edge!.DeviceId).Ask(new EdgeCall(session, call, layer, input)).ConfigureAwait(false);
            double elapsed = watch.Elapsed.TotalMilliseconds;
            _counters[row].Add(call, layer, 4L * input.Data.Length, 4L * answer.Output.Data.Length, answer.EdgeMs, elapsed);
            return (row, answer.Output.Data);
        }
        catch (Exception e)
        {
            _counters[row].Fail(watch.Elapsed.TotalMilliseconds, e.Message);
            return (row, null);
        }
    }
}
