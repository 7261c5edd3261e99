namespace Spa.Model.Plugins;

/// <summary>Turns the gate's probability into the decision to ask the edge, one sequence at a time.</summary>
public interface IGatePolicy
{
    /// <summary>p: the gate's edge probability for the sequence's next token. True: ask the edge.</summary>
    bool Decide(double p);

    /// <summary>The policy of a sequence forked from this one (a beam continuing another): the same state, from now on its own.</summary>
    IGatePolicy Fork();
}

/// <summary>The paper's rule: ask the edge when p > tau. tau 0 always asks (parallel), tau 1 never (base).</summary>
public sealed class ThresholdPolicy(double tau) : IGatePolicy
{
    public double Tau { get; } = tau is >= 0 and <= 1 ? tau : throw new ArgumentException($"tau must be in [0, 1], got {tau}");

    public bool Decide(double p) => p > Tau;

    public IGatePolicy Fork() => this; // no state of its own
}

/// <summary>
/// A round-trip budget: keeps the sequence's M (round trips per generated token) at or under <see cref="Budget"/>
/// at every prefix. tau tracks the (1 - budget) quantile of the gate's probabilities online (a Robbins-Monro step:
/// up by rate * (1 - budget) when p exceeds it, down by rate * budget otherwise), so the budget goes to the tokens the
/// gate is surest about; a token is sent only if sending it keeps M within the budget.
/// </summary>
public sealed class BudgetPolicy : IGatePolicy
{
    private const double Rate = 0.05;
    private long _tokens;
    private long _sent;

    public BudgetPolicy(double budget, double initialTau = 0.5)
    {
        if (!(budget is >= 0 and <= 1)) throw new ArgumentException($"the round-trip budget must be in [0, 1], got {budget}");
        Budget = budget;
        Tau = initialTau;
    }

    public double Budget { get; }
    public double Tau { get; private set; }

    public bool Decide(double p)
    {
        _tokens++;
        bool wanted = p > Tau;
        Tau = Math.Clamp(Tau + Rate * ((wanted ? 1 : 0) - Budget), 0, 1);
        bool send = wanted && _sent + 1 <= Budget * _tokens;
        if (send) _sent++;
        return send;
    }

    public IGatePolicy Fork() => (BudgetPolicy)MemberwiseClone();
}
