using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Spa.Model.Plugins;

/// <summary>One gate decision: the probability the gate gave and whether the edge was asked.</summary>
public readonly record struct GateDecision(double Probability, bool Sent);

/// <summary>
/// Decoding steps of a base with a personal plugin in a combination mode, split between cloud and edge exactly as a
/// deployment splits them: the cloud runs the base and the gate; whatever the edge computes crosses an
/// <see cref="EdgeTransport"/>, which counts round trips and bytes from what is really sent. Works for any batch of
/// sequences; each sequence has its own gate policy (a fixed tau, or a round-trip budget). A sequence forked from
/// another in the cache (a beam taking a copy of its parent's slot) takes a copy of its parent's policy and history, and
/// the rows of one request (its beams) share one round trip and count as one output token per step, so that under beam
/// search M and bytes are per output token. An LST plugin keeps its own KV cache on the device, so it must see every
/// position: the taps of positions the gate kept in the cloud wait there and ride along with the sequence's next
/// round trip (bytes, not extra round trips).
/// </summary>
public sealed class PluginStepper : ITokenStepper
{
    private readonly PersonalPlugin _plugin;
    private readonly CombinationMode _mode;
    private readonly TapPlacement _placement;
    private readonly Func<IGatePolicy> _newPolicy;
    private readonly ConditionalWeakTable<KvCache, SequenceTable> _sequences = new();
    private readonly ConditionalWeakTable<KvCache, LstDecodingState> _lstStates = new();

    public PluginStepper(LlamaModel model, PersonalPlugin plugin, CombinationMode mode, EdgeTransport transport,
        TapPlacement placement = TapPlacement.Edge, Func<IGatePolicy>? gatePolicy = null)
    {
        PersonalPlugin.CheckModeFits(plugin.Kind, mode);
        if (mode is CombinationMode.Switch or CombinationMode.Spa && plugin.Gate is null)
            throw new ArgumentException($"mode '{PluginNames.Name(mode)}' needs a gate, and this plugin was trained without one (mode '{PluginNames.Name(plugin.Mode)}')");
        Model = model;
        _plugin = plugin;
        _mode = mode;
        Transport = transport;
        _placement = placement;
        _newPolicy = gatePolicy ?? (() => new ThresholdPolicy(plugin.GateSettings?.Tau ?? 0.5));
    }

    public LlamaModel Model { get; }
    public EdgeTransport Transport { get; }

    /// <summary>Output positions that produced a next-token distribution, one per request and step: the denominator of M.</summary>
    public long Tokens { get; private set; }

    /// <summary>Every gate decision so far, in order (switch and spa only).</summary>
    public List<GateDecision> Decisions { get; } = [];

    public double RoundTripsPerToken => Tokens == 0 ? 0 : (double)Transport.RoundTrips / Tokens;

    /// <summary>Whether the edge was asked at each token of the sequence now in <paramref name="slot"/>, its ancestors' tokens included.</summary>
    public IReadOnlyList<bool> History(KvCache cache, int slot) =>
        _sequences.TryGetValue(cache, out var table) && table.TryGet(slot, out var sequence) ? sequence.History : [];

    public Tensor Step(KvCache cache, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens)
    {
        var sequences = _sequences.GetValue(cache, c => new SequenceTable(c, _newPolicy));
        var requests = sequences.Begin(slots);
        Transport.BeginStep(requests);
        Tokens += requests.Distinct().Count();
        if (_mode == CombinationMode.Base) return Model.Step(cache, slots, newTokens);
        if (_plugin.Hook is { } hook)
        {
            SetTransport(Transport);
            try
            {
                return Model.Step(cache, slots, newTokens, hook);
            }
            finally
            {
                SetTransport(null);
            }
        }

        if (_plugin.Lst is { } lst) return StepLst(lst, cache, sequences, slots, newTokens);

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var taps = Model.StepTaps(cache, slots, newTokens);                 // [L+1, B, d]
        var normed = Model.FinalNorm.Forward(taps[Model.Config.Layers]);    // [B, d]
        var logits = Model.HeadLogits(normed); // the base's own logits
        var sent = SentRows(sequences, slots, normed, taps[0]);
        if (sent.Length == 0) return logits.MoveToOuterDisposeScope();

        var rows = tensor(sent.Select(r => (long)r).ToArray(), device: Model.Device);
        var output = AskEdge(taps.index_select(1, rows), sent);
        var combined = PluginForward.Combine(Model, _mode, normed.index_select(0, rows), output);
        return logits.index_copy_(0, rows, combined).MoveToOuterDisposeScope();
    }

    // LST: the taps of every new position are buffered per sequence; a round trip sends all that the sequence's LST has
    // not seen (skipped tokens first, in order), which the device runs through its cache before answering for the last.
    private Tensor StepLst(LstSideNetwork lst, KvCache cache, SequenceTable sequences, IReadOnlyList<int> slots, IReadOnlyList<IReadOnlyList<int>> newTokens)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var state = _lstStates.GetValue(cache, c => new LstDecodingState(lst, c, Model.Device, Model.DType));
        state.Follow(cache, slots);
        var taps = Model.StepTapsAtEveryPosition(cache, slots, newTokens);  // [L+1, B, T, d]
        long length = taps.shape[2];
        var last = tensor(newTokens.Select((t, b) => b * length + t.Count - 1).ToArray(), device: Model.Device);
        Tensor AtLast(Tensor x) => x.reshape(-1, Model.Config.Dim).index_select(0, last); // [B, d]
        var normed = Model.FinalNorm.Forward(AtLast(taps[Model.Config.Layers]));
        var logits = Model.HeadLogits(normed); // the base's own logits
        var sent = SentRows(sequences, slots, normed, AtLast(taps[0]));
        for (int b = 0; b < slots.Count; b++) state.Buffer(slots[b], taps.select(1, b).narrow(1, 0, newTokens[b].Count));
        if (sent.Length == 0) return logits.MoveToOuterDisposeScope();

        var sentSlots = sent.Select(b => slots[b]).ToArray();
        var (pending, counts) = state.Take(sentSlots);                     // [L+1, N, d], N = every unseen position
        Transport.RoundTrip(sent);
        var output = _placement == TapPlacement.Edge
            ? lst.Step(lst.Project(Transport.ToEdge(pending)), state.Cache, sentSlots, counts)
            : lst.Step(Transport.ToEdge(lst.Project(pending)), state.Cache, sentSlots, counts);
        var rows = tensor(sent.Select(r => (long)r).ToArray(), device: Model.Device);
        var combined = PluginForward.Combine(Model, _mode, normed.index_select(0, rows), Transport.ToCloud(output));
        return logits.index_copy_(0, rows, combined).MoveToOuterDisposeScope();
    }

    private int[] SentRows(SequenceTable sequences, IReadOnlyList<int> slots, Tensor normed, Tensor token)
    {
        if (_mode is CombinationMode.Side or CombinationMode.Parallel) return Enumerable.Range(0, slots.Count).ToArray();
        using var probabilities = _plugin.Gate!.forward(normed, token).to(ScalarType.Float64).cpu();
        var p = probabilities.data<double>().ToArray();
        var sent = new List<int>();
        for (int b = 0; b < slots.Count; b++)
        {
            var sequence = sequences.Of(slots[b]);
            bool send = sequence.Policy.Decide(p[b]);
            sequence.History.Add(send);
            Decisions.Add(new GateDecision(p[b], send));
            if (send) sent.Add(b);
        }
        return sent.ToArray();
    }

    // One round trip per request: the taps (or their projections) up, the side network's output down.
    private Tensor AskEdge(Tensor taps, IReadOnlyList<int> rows)
    {
        var side = _plugin.Side!;
        Transport.RoundTrip(rows);
        var output = _placement == TapPlacement.Edge
            ? side.forward(Transport.ToEdge(taps))
            : side.Combine(Transport.ToEdge(side.Project(taps)));
        return Transport.ToCloud(output);
    }

    private void SetTransport(EdgeTransport? transport)
    {
        if (_plugin.Lora is { } lora) lora.Transport = transport;
        if (_plugin.Adapter is { } adapter) adapter.Transport = transport;
    }
}

/// <summary>
/// The sequences in a cache's slots as the stepper sees them: each with its request (the beams of one request share
/// it), its gate policy and its history of gate decisions. A slot whose cache is empty starts a new request; a slot
/// copied from another continues the other's request with a copy of its policy and history.
/// </summary>
internal sealed class SequenceTable
{
    private readonly KvCache _cache;
    private readonly Func<IGatePolicy> _newPolicy;
    private readonly Dictionary<int, GatedSequence> _bySlot = [];
    private int _requests;

    public SequenceTable(KvCache cache, Func<IGatePolicy> newPolicy)
    {
        _cache = cache;
        _newPolicy = newPolicy;
        cache.SlotCopied += (from, to) =>
        {
            if (_bySlot.TryGetValue(from, out var parent)) _bySlot[to] = parent.Fork();
        };
    }

    /// <summary>The request of each slot about to step; a slot with nothing cached starts a new one.</summary>
    public int[] Begin(IReadOnlyList<int> slots)
    {
        var requests = new int[slots.Count];
        for (int b = 0; b < slots.Count; b++)
        {
            if (_cache.Length(slots[b]) == 0 || !_bySlot.ContainsKey(slots[b]))
                _bySlot[slots[b]] = new GatedSequence(_requests++, _newPolicy(), []);
            requests[b] = _bySlot[slots[b]].Request;
        }
        return requests;
    }

    public GatedSequence Of(int slot) => _bySlot[slot];

    public bool TryGet(int slot, out GatedSequence sequence) => _bySlot.TryGetValue(slot, out sequence!);
}

internal sealed record GatedSequence(int Request, IGatePolicy Policy, List<bool> History)
{
    public GatedSequence Fork() => new(Request, Policy.Fork(), [.. History]);
}
