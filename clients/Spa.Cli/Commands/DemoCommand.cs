using System.CommandLine;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Spa.CommandLine;
using Spa.Edge;
using Spa.Grains.Abstractions;
using Spa.Model.Plugins;
using Spa.Model.Tasks;
using Spa.Model.Tokenizers;
using Spa.Model.Training;
using Spa.Silo;

namespace Spa.Cli.Commands;

/// <summary>
/// <c>spa demo</c>: the method end to end in one command. It writes a small personal corpus (stories whose characters
/// carry the user's private names), trains a ladder plugin with its gate, starts the one-process cluster, registers a
/// simulated device holding the plugin (with a phone's compute and link delays really applied), and generates the same
/// prompt in modes base, parallel and spa. Tokens print coloured by where they came from; a table gives each mode's M,
/// bytes and latency per token.
/// </summary>
public static class DemoCommand
{
    private const string User = ApiKeys.DefaultUser;

    public static Command Create()
    {
        var model = new ModelArguments();
        var names = new Option<string>("--names") { Description = "The user's private names, comma separated.", DefaultValueFactory = _ => "Zorblax,Quimby,Vexa" };
        var stories = new Option<int>("--stories") { Description = "Stories in the personal corpus.", DefaultValueFactory = _ => 80 };
        var epochs = new Option<int>("--epochs") { Description = "Training epochs.", DefaultValueFactory = _ => 8 };
        var prompt = new Option<string>("--prompt") { Description = "What to generate from.", DefaultValueFactory = _ => "Once upon a time, there was a little girl named" };
        var tokens = new Option<int>("--tokens") { Description = "Tokens to generate in each mode.", DefaultValueFactory = _ => 60 };
        var profile = new Option<string>("--profile") { Description = "The simulated device: local, phone-4g, phone-5g, laptop-wifi or server-lan.", DefaultValueFactory = _ => "phone-5g" };
        var tau = new Option<double?>("--tau") { Description = "The gate's threshold in mode spa (default: the plugin's own, set on held-out stories when it was trained)." };
        var work = new Option<string?>("--work") { Description = "Keep the corpus and the plugin in this directory (default: a temporary one, removed afterwards)." };

        var command = new Command("demo", "Build a personal corpus, train a plugin, serve it from a simulated device, and show where each token came from.");
        model.AddTo(command);
        foreach (var option in new Option[] { names, stories, epochs, prompt, tokens, profile, tau, work }) command.Options.Add(option);
        command.SetGuardedAction(async (result, cancellation) =>
        {
            int storyCount = result.GetValue(stories), epochCount = result.GetValue(epochs), tokenCount = result.GetValue(tokens);
            if (storyCount < 20) throw new UsageException($"--stories must be at least 20 (a tenth goes to validation), got {storyCount}");
            if (epochCount <= 0 || tokenCount <= 0) throw new UsageException("--epochs and --tokens must be positive");
            if (result.GetValue(tau) is { } t && !(t is >= 0 and <= 1)) throw new UsageException($"--tau must be in [0, 1], got {t}");
            var privateNames = result.GetValue(names)!.Split(',', StringSplitOptions.TrimEntries);
            try
            {
                PersonalCorpus.CheckNames(privateNames);
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"--names: {e.Message}");
            }
            EdgeProfile deviceProfile;
            try
            {
                deviceProfile = EdgeProfiles.Named(result.GetValue(profile)!);
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"--profile: {e.Message}");
            }
            var keep = result.GetValue(work);
            var directory = keep ?? Path.Combine(Path.GetTempPath(), $"spa-demo-{Guid.NewGuid():N}");
            Directory.CreateDirectory(directory);
            try
            {
                var modelPath = model.ResolvePath(result);
                var plugin = Path.Combine(directory, "plugin");
                var clock = Stopwatch.StartNew();
                Train(model, result, privateNames, storyCount, epochCount, plugin, cancellation);
                Console.Error.WriteLine($"demo: corpus and plugin ready in {clock.Elapsed.TotalSeconds:F1} s");
                await Serve(modelPath, plugin, deviceProfile, result.GetValue(prompt)!, tokenCount, result.GetValue(tau), cancellation);
            }
            finally
            {
                if (keep is null) Directory.Delete(directory, recursive: true);
            }
            return 0;
        });
        return command;
    }

    private static void Train(ModelArguments model, ParseResult result, string[] names, int stories, int epochs, string directory, CancellationToken cancellation)
    {
        using var llama = model.LoadModel(result);
        var tokenizer = model.LoadTokenizer(result, llama);
        var corpus = new List<PersonalStory>();
        using (var line = new ProgressLine())
            corpus.AddRange(PersonalCorpus.Generate(llama, tokenizer, names, stories, seed: 1, maxTokens: 150,
                new SynchronousProgress<int>(made => line.Update($"demo: writing the personal corpus {ProgressLine.Bar((double)made / stories)} {made}/{stories} stories")),
                cancellation));
        var options = new TrainingOptions { Epochs = epochs, WordStarts = WordStarts.Of(tokenizer) };
        options.Validate();
        var (train, validation) = TaskArguments.PersonalTrainingData(corpus, tokenizer, Math.Min(llama.Config.MaxSeqLen, options.MaxSequenceLength));
        using var plugin = PersonalPlugin.Create(llama, PluginKind.Ladder, CombinationMode.Spa, PluginDimensions.For(llama.Config), GateSettings.Default, options.Seed);
        TrainCommand.TrainAndSave(llama, plugin, options, TauChoice.From(null, null, null, TrainCommand.DefaultTargetQuality), "personal", train, validation,
            directory, resume: false, "demo: training the plugin, ", cancellation);
        Console.Error.WriteLine($"demo: {corpus.Count} stories with the names {string.Join(", ", names)}; a ladder plugin of " +
            $"{plugin.DeviceParameterCount:N0} parameters ({100.0 * plugin.DeviceParameterCount / llama.ParameterCount:F1}% of the base) trained on {train.Count} of them");
    }

    private static async Task Serve(string modelPath, string plugin, EdgeProfile profile, string prompt, int tokens, double? tau, CancellationToken cancellation)
    {
        var (siloPort, gatewayPort) = LoopbackPorts.FreePair();
        var app = SiloHost.Build(new SiloHostOptions
        {
            Model = modelPath,
            Http = "127.0.0.1:0",
            SiloPort = siloPort,
            GatewayPort = gatewayPort,
            ApiKey = "spa-demo-" + Guid.NewGuid().ToString("N"),
            Announce = TextWriter.Null,
            Quiet = true,
        });
        await using (app)
        {
            await app.StartAsync(cancellation);
            var served = app.Services.GetRequiredService<ServedModel>();
            while (!served.IsReady)
            {
                if (served.Failure is { } failure) throw new InvalidOperationException(failure);
                await Task.Delay(50, cancellation);
            }
            var grains = app.Services.GetRequiredService<IGrainFactory>();
            const string deviceId = "demo-phone";
            await grains.GetGrain<IEdgeDeviceGrain>(deviceId).Register(new DeviceRegistration(User, "demo-secret-" + Guid.NewGuid().ToString("N"),
                new SimulatedDevice(plugin, profile)));
            Console.Error.WriteLine($"demo: one-process cluster up; device '{deviceId}' simulates a {profile.Name} " +
                $"({profile.Cores} cores at {profile.FlopsPerCore / 1e9:F0} GFLOP/s, {profile.RoundTripMs:F0} ms round trip, {profile.UpMbps:F0}/{profile.DownMbps:F0} Mbit/s up/down)");

            bool colour = !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("NO_COLOR") is null;
            Console.WriteLine(colour ? "\u001b[36mcyan\u001b[0m: the device took part in the token; plain: the cloud alone"
                : "[brackets]: the device took part in the token; plain: the cloud alone");
            var promptTokens = served.Tokenizer.Encode(prompt, bos: true, eos: false).ToArray();
            var rows = new List<(string Mode, GenerationResult Result)>();
            foreach (var mode in new[] { SessionMode.Base, SessionMode.Parallel, SessionMode.Spa })
            {
                var name = WireNames.Of(mode);
                var session = grains.GetGrain<IDecodingSessionGrain>($"demo-{name}");
                var decoder = served.Tokenizer.CreateStreamDecoder();
                foreach (var id in promptTokens) decoder.Push(id);
                Console.Write($"\n{name,-9}| {prompt}");
                var request = new GenerationRequest(promptTokens, tokens)
                {
                    Plugin = new PluginChoice { Mode = mode, DeviceId = mode == SessionMode.Base ? null : deviceId, Tau = mode == SessionMode.Spa ? tau : null },
                    User = User,
                };
                await foreach (var token in session.GenerateStream(request, cancellation))
                {
                    if (token.Token == served.Description.EosId || token.Token == served.Description.BosId) break;
                    var piece = decoder.Push(token.Token);
                    Console.Write(!token.Edge || piece.Length == 0 ? piece : colour ? $"\u001b[36m{piece}\u001b[0m" : $"[{piece}]");
                }
                Console.WriteLine(decoder.Flush());
                rows.Add((name, await session.GetStatus()));
                await session.End();
            }
            Console.WriteLine();
            Console.WriteLine("| mode | tokens | M | bytes up / token | bytes down / token | cloud ms / token | edge ms / token | network ms / token | total ms / token |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var (mode, r) in rows)
            {
                double n = Math.Max(1, r.GeneratedTokens);
                Console.WriteLine($"| {mode} | {r.GeneratedTokens} | {r.M:F3} | {r.Edge.BytesUp / n:F0} | {r.Edge.BytesDown / n:F0} | {r.CloudMs / n:F2} | {r.Edge.EdgeMs / n:F2} | {r.Edge.NetworkMs / n:F2} | {r.TotalMs / n:F2} |");
            }
            await app.StopAsync(CancellationToken.None);
        }
    }

}
