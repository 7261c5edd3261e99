using System.CommandLine;
using System.Diagnostics;
using System.Runtime;

namespace Spa.Cli.Commands;

/// <summary>
/// Benchmarks measure a warm process. .NET's tiered JIT recompiles the hot methods during a process's first seconds, on
/// a thread that takes one of the cores, and the measured path runs unoptimised code meanwhile; a server that runs for
/// hours does neither. Unmeasured rounds run until the JIT compiled for less than <see cref="QuietShare"/> of a round's
/// time (on stories260K the first rounds compile for 9-84% of theirs, a warm process still for 0.5-3%: methods that reach
/// their call counts late), or until the most rounds allowed; the report says NOT WARM when the last round was not quiet.
/// </summary>
internal static class ProcessWarmUp
{
    public const double QuietShare = 0.05;

    /// <summary>The <c>--warm-up-rounds</c> option; <paramref name="round"/> says what one round runs.</summary>
    public static Option<int> RoundsOption(string round) => new("--warm-up-rounds")
    {
        Description = $"Most unmeasured rounds ({round}) before the measured ones; they stop once the JIT compiled for less than {QuietShare:P0} of a round's time.",
        DefaultValueFactory = _ => 8,
    };

    /// <summary>Runs <paramref name="round"/> until the process is warm or <paramref name="most"/> rounds ran; <paramref name="starting"/> hears of each round before it runs.</summary>
    public static async Task<IReadOnlyList<WarmUpRound>> RunAsync(int most, Func<Task> round, Action<string>? starting = null)
    {
        var rounds = new List<WarmUpRound>();
        while (rounds.Count < most && (rounds.Count == 0 || !rounds[^1].Warm))
        {
            starting?.Invoke(rounds.Count == 0 ? "warming up" : $"warming up, round {rounds.Count + 1} (the JIT compiled for {rounds[^1].JitShare:P1} of the last)");
            var jit = JitInfo.GetCompilationTime();
            var clock = Stopwatch.StartNew();
            await round();
            rounds.Add(new WarmUpRound(Math.Round(clock.Elapsed.TotalSeconds, 3), Math.Round((JitInfo.GetCompilationTime() - jit).TotalMilliseconds, 1)));
        }
        return rounds;
    }

    /// <summary>One line for the report: how many rounds, the JIT's share of the first and the last, and NOT WARM if the last was not quiet.</summary>
    public static string Summary(IReadOnlyList<WarmUpRound> rounds)
    {
        var (first, last) = (rounds[0], rounds[^1]);
        return $"warm-up: {rounds.Count} round(s); the JIT compiled for {first.JitShare:P1} of the first, {last.JitShare:P1} of the last" +
            (last.Warm ? "" : $": NOT WARM (the measured runs include JIT work above {QuietShare:P0} of their time; raise --warm-up-rounds)");
    }
}

/// <summary>An unmeasured round, and the time the JIT spent compiling during it.</summary>
internal sealed record WarmUpRound(double Seconds, double JitMs)
{
    public double JitShare => JitMs / (1000 * Seconds);
    public bool Warm => JitShare < ProcessWarmUp.QuietShare;
}
