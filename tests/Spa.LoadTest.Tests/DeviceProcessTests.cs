using System.Text.Json;
using Spa.Testing;

namespace Spa.LoadTest.Tests;

/// <summary>The fleet as real spa-device processes, each over its own TCP connection to the embedded cluster's gateway.</summary>
public sealed class DeviceProcessTests
{
    [Fact]
    public async Task DevicesRunAsSeparateProcessesOverRealTcp()
    {
        var json = Path.Combine(Path.GetTempPath(), $"spa-load-processes-{Guid.NewGuid():N}.json");
        try
        {
            await using var run = await SpaLoad.RunAsync(TimeSpan.FromSeconds(150), "--embedded", "--device-processes", "--model", SharedData.Stories260K,
                "--devices", "2", "--concurrency", "2", "--duration", "2", "--warmup", "0.3", "--max-tokens", "4", "--modes", "parallel,lora",
                "--json", json, "--no-plots");
            Assert.True(run.ExitCode == 0, run.ToString());
            var modes = JsonDocument.Parse(await File.ReadAllTextAsync(json)).RootElement.GetProperty("modes").EnumerateArray().ToList();
            foreach (var (mode, m) in modes.Zip(new[] { 1.0, 5.0 }))
            {
                Assert.True(mode.GetProperty("requests").GetInt32() > 0, mode.ToString());
                Assert.Equal(0, mode.GetProperty("errors").GetInt32());
                Assert.Equal(m, mode.GetProperty("m").GetDouble());
                var group = Assert.Single(mode.GetProperty("groups").EnumerateArray());
                Assert.Equal("process-loopback", group.GetProperty("group").GetString());
                // No delay is emulated: what the round trips cost is the real TCP hop to another process and back.
                Assert.True(group.GetProperty("measured_ms").GetProperty("network").GetDouble() > 0, group.ToString());
                Assert.Equal(0, group.GetProperty("predicted_ms").GetProperty("network").GetDouble(), 3);
            }
        }
        finally
        {
            foreach (var file in Directory.GetFiles(Path.GetTempPath(), Path.GetFileNameWithoutExtension(json) + "*")) File.Delete(file);
        }
    }
}
