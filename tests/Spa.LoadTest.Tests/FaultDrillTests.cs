using System.Globalization;
using System.Text.Json;
using Spa.CommandLine;
using Spa.Testing;
using Xunit.Abstractions;

namespace Spa.LoadTest.Tests;

/// <summary>
/// spa-load's fault drills against real processes: a silo stopped and continued, device processes killed mid-request,
/// and two silos of three killed on Redis. Each drill's figures come from the report it writes, where every request is
/// compared token for token with the same request run undisturbed afterwards.
/// </summary>
public sealed class FaultDrillTests(RedisServer redis, ITestOutputHelper output) : IClassFixture<RedisServer>
{
    private const string Key = "a-key-for-the-fault-drill";

    [Theory]
    [InlineData("kill:4242@10", FaultAction.Kill, "4242", 10, null)]
    [InlineData("stop:4242@2.5s+1.5s", FaultAction.Stop, "4242", 2.5, 1.5)]
    [InlineData("kill-devices:3@0+4", FaultAction.KillDevices, "3", 0, 4.0)]
    [InlineData("kill-devices:1@7", FaultAction.KillDevices, "1", 7, null)]
    [InlineData("exec:kubectl delete pod spa-1 -n a@b@12", FaultAction.Exec, "kubectl delete pod spa-1 -n a@b", 12, null)]
    public void FaultsAreReadAsWritten(string text, FaultAction action, string target, double at, double? length)
    {
        var fault = Fault.Parse(text);
        Assert.Equal(new Fault(action, target, at, length), fault);
        Assert.Equal(fault, Fault.Parse(fault.ToString()));
    }

    [Theory]
    [InlineData("kill:4242", "expected ACTION:TARGET@SECONDS")]
    [InlineData("freeze:4242@1", "unknown action 'freeze'")]
    [InlineData("kill:-3@1", "'-3' is not a process id")]
    [InlineData("kill:4242@1+2", "kill has no length")]
    [InlineData("stop:4242@1", "stop needs a length")]
    [InlineData("stop:4242@1+0", "a length must be positive")]
    [InlineData("kill-devices:none@1", "'none' is not a device count")]
    [InlineData("kill:4242@soon", "'soon' is not a time in seconds")]
    [InlineData("exec: @1", "the command is empty")]
    public void AFaultThatCannotBeReadSaysWhy(string text, string reason)
    {
        var error = Assert.Throws<UsageException>(() => Fault.Parse(text));
        Assert.Contains(reason, error.Message);
        Assert.Contains(Fault.Syntax, error.Message);
    }

    [Theory]
    [InlineData(new[] { 5, 6, 7 }, new[] { 5, 6, 7 }, 0, 0)]
    [InlineData(new[] { 5 }, new[] { 5, 6, 7, 8 }, 3, 0)]
    [InlineData(new[] { 5, 6, 6, 7 }, new[] { 5, 6, 7 }, 0, 1)]
    [InlineData(new[] { 5, 9, 7 }, new[] { 5, 6, 7 }, 1, 1)]
    [InlineData(new int[0], new[] { 5, 6 }, 2, 0)]
    public void LostAndExtraTokensAreCountedAgainstTheUndisturbedRun(int[] delivered, int[] expected, int lost, int extra) =>
        Assert.Equal((lost, extra), DrillFigures.Compare(delivered, expected));

    [Fact]
    public async Task ADrillRunsOneModeAgainstProcessesThatExist()
    {
        await using var twoModes = await SpaLoad.RunAsync(TimeSpan.FromSeconds(60), "--embedded", "--model", SharedData.Stories260K, "--modes", "base,parallel",
            "--fault", "kill:4242@1");
        Assert.True(twoModes.ExitCode == 2, twoModes.ToString());
        Assert.Contains("a drill runs one mode", twoModes.Stderr);

        await using var missing = await SpaLoad.RunAsync(TimeSpan.FromSeconds(60), "--embedded", "--model", SharedData.Stories260K, "--modes", "base",
            "--duration", "5", "--fault", "kill:99999999@1");
        Assert.True(missing.ExitCode == 2, missing.ToString());
        Assert.Contains("there is no process 99999999", missing.Stderr);
    }

    /// <summary>
    /// A silo that hangs (SIGSTOP) for 1.5 s and comes back: the streams stall at least that long and then go on, every
    /// request equal to its undisturbed run.
    /// </summary>
    [Fact]
    public async Task AStoppedSiloStallsTheStreamsAndLosesNoToken()
    {
        var ports = Ports.Free(3);
        await using var serve = SpaLoad.Start(SpaLoad.SpaDll, ["serve", "--model", SharedData.Stories260K, "--http", $"127.0.0.1:{ports[0]}",
            "--silo-port", Text(ports[1]), "--gateway-port", Text(ports[2]), "--api-key", Key]);
        await serve.WaitForOutputAsync("Serving stories260K", TimeSpan.FromSeconds(60));

        var drill = await Drill(TimeSpan.FromSeconds(120), "--cluster", $"127.0.0.1:{ports[2]}", "--modes", "base", "--devices", "3", "--concurrency", "3",
            "--duration", "4", "--max-tokens", "200", "--fault", $"stop:{serve.Id}@1+1.5");
        AllIdentical(drill);
        var fault = Assert.Single(drill.GetProperty("faults").EnumerateArray());
        Assert.StartsWith($"SIGSTOP sent to {serve.Id}", fault.GetProperty("outcome").GetString());
        Assert.True(fault.GetProperty("in_flight").GetInt32() > 0, fault.ToString());
        Assert.True(fault.GetProperty("recovery_max_ms").GetDouble() >= 1500, $"the streams went on while the silo was stopped: {fault}");
        Assert.Equal(0, await serve.TerminateAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>
    /// A device process killed mid-request (the mode falls back to nothing: the request fails) and started again a second
    /// later: the requests it was serving lose their remaining tokens, which the drill counts, and no other request does.
    /// </summary>
    [Fact]
    public async Task KilledDevicesLoseTheTokensOfTheirRequestsAndComeBack()
    {
        var drill = await Drill(TimeSpan.FromSeconds(180), "--embedded", "--device-processes", "--modes", "parallel", "--devices", "2", "--concurrency", "2",
            "--duration", "6", "--max-tokens", "300", "--fault", "kill-devices:1@1.5+1");
        var fault = Assert.Single(drill.GetProperty("faults").EnumerateArray());
        Assert.StartsWith("killed 1 device processes", fault.GetProperty("outcome").GetString());
        Assert.True(fault.GetProperty("failed").GetInt32() >= 1, $"no request failed with its device: {fault}");
        Assert.True(fault.GetProperty("tokens_lost").GetInt64() > 0, fault.ToString());
        Assert.Equal(0, drill.GetProperty("tokens_extra").GetInt64());
        Assert.Equal(drill.GetProperty("requests").GetInt32() - drill.GetProperty("failed").GetInt32(), drill.GetProperty("identical").GetInt32());
        Assert.Equal(drill.GetProperty("tokens_lost").GetInt64(), fault.GetProperty("tokens_lost").GetInt64());
    }

    /// <summary>
    /// The majority-loss drill as an operator runs it: three <c>spa serve --redis</c> processes, spa-load connected to
    /// all three gateways (its replies time out after 5 s: a reply the dead silos swallowed is given up then), two silos
    /// SIGKILLed half a second apart. Every request completes equal to its undisturbed run. Heavy (three silos and
    /// spa-load on two cores), so it runs with the timing tests.
    /// </summary>
    [Fact]
    [Trait("Category", "Timing")]
    public async Task ADrillKillingTwoSilosOfThreeLosesNoToken()
    {
        var ports = Ports.Free(9);
        var membership = new Dictionary<string, string?>
        {
            ["Spa__Cluster__Membership__ProbeTimeout"] = "00:00:01",
            ["Spa__Cluster__Membership__NumMissedProbesLimit"] = "2",
        };
        var silos = Enumerable.Range(0, 3).Select(i => SpaLoad.Start(SpaLoad.SpaDll, ["serve", "--model", SharedData.Stories260K,
            "--http", $"127.0.0.1:{ports[3 * i]}", "--silo-port", Text(ports[3 * i + 1]), "--gateway-port", Text(ports[3 * i + 2]),
            "--api-key", Key, "--shards", "3", "--redis", redis.Endpoint], membership)).ToArray();
        try
        {
            foreach (var silo in silos) await silo.WaitForOutputAsync("Serving stories260K", TimeSpan.FromSeconds(120));
            var drill = await Drill(TimeSpan.FromSeconds(240), "--cluster", string.Join(",", Enumerable.Range(0, 3).Select(i => $"127.0.0.1:{ports[3 * i + 2]}")),
                "--response-timeout", "5", "--modes", "base", "--devices", "4", "--concurrency", "4", "--duration", "8", "--max-tokens", "200",
                "--fault", $"kill:{silos[1].Id}@2", "--fault", $"kill:{silos[2].Id}@2.5");
            AllIdentical(drill);
            var faults = drill.GetProperty("faults").EnumerateArray().ToList();
            Assert.Equal([$"SIGKILL sent to {silos[1].Id}", $"SIGKILL sent to {silos[2].Id}"], faults.Select(f => f.GetProperty("outcome").GetString()));
            Assert.True(faults[0].GetProperty("in_flight").GetInt32() > 0, faults[0].ToString());
            Assert.True(faults.Sum(f => f.GetProperty("resumed").GetInt32()) > 0, "no stream was broken by the kills, so the drill tested nothing");
            Assert.Equal(0, await silos[0].TerminateAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    /// <summary>Runs spa-load with <paramref name="args"/> (the model, a short warm-up and a JSON report added) and returns its report's drill.</summary>
    private async Task<JsonElement> Drill(TimeSpan timeout, params string[] args)
    {
        var json = Path.Combine(Path.GetTempPath(), $"spa-load-drill-{Guid.NewGuid():N}.json");
        try
        {
            await using var run = await SpaLoad.RunAsync(timeout, [.. args, "--model", SharedData.Stories260K, "--warmup", "0.3", "--json", json, "--no-plots"]);
            Assert.True(run.ExitCode == 0, run.ToString());
            output.WriteLine(run.Stdout);
            output.WriteLine(run.Stderr);
            return JsonDocument.Parse(await File.ReadAllTextAsync(json)).RootElement.GetProperty("drill").Clone();
        }
        finally
        {
            foreach (var file in Directory.GetFiles(Path.GetTempPath(), Path.GetFileNameWithoutExtension(json) + "*")) File.Delete(file);
        }
    }

    private static void AllIdentical(JsonElement drill)
    {
        Assert.True(drill.GetProperty("requests").GetInt32() > 0, drill.ToString());
        Assert.Equal((drill.GetProperty("requests").GetInt32(), 0, 0L, 0L),
            (drill.GetProperty("identical").GetInt32(), drill.GetProperty("failed").GetInt32(), drill.GetProperty("tokens_lost").GetInt64(), drill.GetProperty("tokens_extra").GetInt64()));
    }

    private static string Text(int port) => port.ToString(CultureInfo.InvariantCulture);
}
