using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Spa.Testing;

namespace Spa.Silo.Tests;

/// <summary>
/// The manifests of k8s/: each overlay rendered by <c>kubectl kustomize</c>, every object validated against the
/// Kubernetes schemas by k8s/validate (kubernetes-models, unknown fields rejected), then checked for what the
/// deployment relies on: GPUs in the gpu overlay only, no key in the manifests, probes and resources on every
/// container, and a silo pod whose environment is a valid Kubernetes hosting configuration of <see cref="SiloHostOptions"/>.
/// </summary>
public sealed class KubernetesManifestTests
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);
    private static readonly string K8s = Path.Combine(SharedData.RepoRoot, "k8s");
    private static readonly string Validator = Path.Combine(K8s, "validate", "validate.mjs");

    private sealed record Run(int ExitCode, string Stdout, string Stderr);

    private static async Task<Run> RunAsync(string program, string why, params string[] args)
    {
        var start = new ProcessStartInfo(OnPath(program, why));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        await using var child = ChildProcess.Start(start);
        var exitCode = await child.WaitForExitAsync(CommandTimeout);
        return new Run(exitCode, child.Stdout, child.Stderr);
    }

    private static string OnPath(string program, string why) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, program))
            .FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException($"{program} is not on PATH: {why}");

    private static async Task<string> RenderAsync(string kustomization)
    {
        var run = await RunAsync("kubectl", "the manifest tests render the overlays with `kubectl kustomize` (kubectl 1.32 or later)",
            "kustomize", kustomization);
        Assert.True(run.ExitCode == 0, $"kubectl kustomize {kustomization} failed:\n{run.Stderr}");
        return run.Stdout;
    }

    /// <summary>Validates <paramref name="manifests"/> with k8s/validate; the objects come back as JSON.</summary>
    private static async Task<Run> ValidateAsync(string manifests)
    {
        if (!Directory.Exists(Path.Combine(K8s, "validate", "node_modules", "kubernetes-models")))
            throw new InvalidOperationException("k8s/validate/node_modules is missing: run `npm ci --prefix k8s/validate` (.ci/run does)");
        var file = Path.Combine(Path.GetTempPath(), $"spa-manifests-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, manifests);
        try
        {
            return await RunAsync("node", "the manifest tests validate with k8s/validate/validate.mjs (Node.js 20 or later)", Validator, "--json", file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    // Each overlay is rendered and validated once for the tests that only read its objects.
    private static readonly ConcurrentDictionary<string, Lazy<Task<JsonArray>>> Overlays = new();

    /// <summary>The valid objects of an overlay; fails with the validator's reasons when any is invalid.</summary>
    private static Task<JsonArray> OverlayAsync(string overlay) =>
        Overlays.GetOrAdd(overlay, name => new Lazy<Task<JsonArray>>(() => RenderAndValidateAsync(name))).Value;

    private static async Task<JsonArray> RenderAndValidateAsync(string overlay)
    {
        var run = await ValidateAsync(await RenderAsync(Path.Combine(K8s, "overlays", overlay)));
        Assert.True(run.ExitCode == 0, $"the {overlay} overlay has invalid objects:\n{run.Stderr}");
        return JsonNode.Parse(run.Stdout)!.AsArray();
    }

    private static IEnumerable<JsonNode> OfKind(JsonArray objects, string kind) =>
        objects.Select(o => o!).Where(o => (string?)o["kind"] == kind);

    private static JsonNode Named(JsonArray objects, string kind, string name) =>
        OfKind(objects, kind).Single(o => (string?)o["metadata"]!["name"] == name);

    private static IEnumerable<JsonNode> Workloads(JsonArray objects) =>
        OfKind(objects, "Deployment").Concat(OfKind(objects, "StatefulSet"));

    private static IEnumerable<JsonNode> Containers(JsonNode workload)
    {
        var pod = workload["spec"]!["template"]!["spec"]!;
        return (pod["initContainers"]?.AsArray() ?? []).Concat(pod["containers"]!.AsArray()).Select(c => c!);
    }

    private static JsonNode SiloContainer(JsonArray objects) => Containers(Named(objects, "StatefulSet", "spa-silo")).Single(c => (string?)c["name"] == "silo");

    private static string? Env(JsonNode container, string name) =>
        (string?)container["env"]!.AsArray().SingleOrDefault(e => (string?)e!["name"] == name)?["value"];

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public async Task TheOverlayRendersAndEveryObjectIsValid(string overlay)
    {
        var run = await ValidateAsync(await RenderAsync(Path.Combine(K8s, "overlays", overlay)));
        Assert.True(run.ExitCode == 0, run.Stderr);
        var objects = JsonNode.Parse(run.Stdout)!.AsArray();
        Assert.Contains($"{objects.Count} objects, 0 invalid", run.Stderr);
        string[] expected = ["ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "PodDisruptionBudget", "Role", "RoleBinding",
            "Service", "ServiceAccount", "StatefulSet"];
        Assert.Equal(expected, objects.Select(o => (string)o!["kind"]!).Distinct().Order());
        foreach (var namespaced in objects.Where(o => (string?)o!["kind"] != "Namespace"))
            Assert.Equal("spa", (string?)namespaced!["metadata"]!["namespace"]);
    }

    /// <summary>The data of the ConfigMap generated as <paramref name="name"/> (kustomize appends a hash to the name).</summary>
    private static JsonObject ConfigMapData(JsonArray objects, string name) =>
        OfKind(objects, "ConfigMap").Single(c => ((string)c["metadata"]!["name"]!).StartsWith(name + "-", StringComparison.Ordinal))["data"]!.AsObject();

    /// <summary>The value of the first "KEY: VALUE" line of a YAML text.</summary>
    private static string YamlValue(string yaml, string key) =>
        Regex.Match(yaml, $@"^\s*{Regex.Escape(key)}:\s*(\S+)\s*$", RegexOptions.Multiline) is { Success: true } match ? match.Groups[1].Value
        : throw new InvalidOperationException($"no '{key}:' in\n{yaml}");

    [Fact]
    public async Task GrafanaFindsTheDashboardsAndPrometheusTheSilos()
    {
        var objects = await OverlayAsync("cpu");
        // Grafana mounts grafana/'s files, generated into ConfigMaps, where its provisioning expects them.
        var grafana = Named(objects, "Deployment", "spa-grafana")["spec"]!["template"]!["spec"]!;
        var mounts = Containers(Named(objects, "Deployment", "spa-grafana")).Single()["volumeMounts"]!.AsArray()
            .ToDictionary(m => (string)m!["name"]!, m => (string)m!["mountPath"]!);
        var mountedConfigMaps = grafana["volumes"]!.AsArray().Where(v => v!["configMap"] is not null)
            .ToDictionary(v => (string)v!["configMap"]!["name"]!, v => mounts[(string)v!["name"]!]);
        var dashboards = ConfigMapData(objects, "grafana-dashboards");
        Assert.Equal(["spa-edge-fleet.json", "spa-overview.json"], dashboards.Select(d => d.Key).Order());
        foreach (var (file, json) in dashboards) Assert.False(string.IsNullOrEmpty((string?)JsonNode.Parse((string)json!)!["title"]), $"{file} has no title");
        var provider = (string)ConfigMapData(objects, "grafana-dashboard-providers")["spa.yaml"]!;
        Assert.Equal(YamlValue(provider, "path"), mountedConfigMaps.Single(m => m.Key.StartsWith("grafana-dashboards-", StringComparison.Ordinal)).Value);
        Assert.Equal("/etc/grafana/provisioning/dashboards", mountedConfigMaps.Single(m => m.Key.StartsWith("grafana-dashboard-providers-", StringComparison.Ordinal)).Value);
        Assert.Equal("/etc/grafana/provisioning/datasources", mountedConfigMaps.Single(m => m.Key.StartsWith("grafana-datasources-", StringComparison.Ordinal)).Value);

        // The datasource's URL is the Prometheus Service, and that Service selects the Prometheus pod.
        var datasource = new Uri(YamlValue((string)ConfigMapData(objects, "grafana-datasources")["prometheus.yaml"]!, "url"));
        var service = Named(objects, "Service", datasource.Host);
        Assert.Contains(service["spec"]!["ports"]!.AsArray(), p => (int)p!["port"]! == datasource.Port);
        var prometheus = Named(objects, "Deployment", "spa-prometheus");
        foreach (var (key, value) in service["spec"]!["selector"]!.AsObject())
            Assert.Equal((string?)value, (string?)prometheus["spec"]!["template"]!["metadata"]!["labels"]![key]);
        // Prometheus keeps the pods annotated as the silos are, and its account may list them.
        var config = (string)ConfigMapData(objects, "spa-prometheus-config")["prometheus.yml"]!;
        Assert.Contains("__meta_kubernetes_pod_annotation_prometheus_io_scrape", config);
        Assert.Equal("\"true\"", YamlValue(config, "regex"));
        var account = (string)prometheus["spec"]!["template"]!["spec"]!["serviceAccountName"]!;
        var binding = OfKind(objects, "RoleBinding").Single(b => b["subjects"]!.AsArray().Any(x => (string?)x!["name"] == account));
        var verbs = Named(objects, "Role", (string)binding["roleRef"]!["name"]!)["rules"]!.AsArray().Single()!["verbs"]!.AsArray().Select(v => (string)v!);
        Assert.Subset(verbs.ToHashSet(), new HashSet<string> { "list", "watch" });
    }

    [Fact]
    public async Task OnlyTheGpuOverlayRequestsGpus()
    {
        var gpu = await OverlayAsync("gpu");
        var silo = SiloContainer(gpu);
        Assert.Equal("1", silo["resources"]!["limits"]!["nvidia.com/gpu"]!.ToString());
        Assert.Equal("cuda:0", Env(silo, "Spa__Model__Device"));
        Assert.Equal("cuda:0", Env(silo, "Spa__Accelerators__Devices"));
        var pod = Named(gpu, "StatefulSet", "spa-silo")["spec"]!["template"]!["spec"]!;
        Assert.Equal("true", (string?)pod["nodeSelector"]!["nvidia.com/gpu.present"]);
        Assert.Contains(pod["tolerations"]!.AsArray(), t => (string?)t!["key"] == "nvidia.com/gpu");
        Assert.EndsWith("-cuda", (string)silo["image"]!);

        var cpu = await OverlayAsync("cpu");
        Assert.DoesNotContain("nvidia.com/gpu", cpu.ToJsonString());
        Assert.Equal("cpu", Env(SiloContainer(cpu), "Spa__Model__Device"));
        Assert.DoesNotContain("-cuda", (string)SiloContainer(cpu)["image"]!);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public async Task NoSecretValueIsInlined(string overlay)
    {
        var objects = await OverlayAsync(overlay);
        Assert.Empty(OfKind(objects, "Secret"));
        Assert.DoesNotContain(ApiKeys.Section.Replace(":", "__", StringComparison.Ordinal), objects.ToJsonString());
        string[] secretWords = ["KEY", "PASSWORD", "SECRET", "TOKEN"];
        foreach (var container in Workloads(objects).SelectMany(Containers))
            foreach (var env in container["env"]?.AsArray() ?? [])
            {
                var name = (string)env!["name"]!;
                var words = name.ToUpperInvariant().Split('_', StringSplitOptions.RemoveEmptyEntries);
                if (words.Intersect(secretWords).Any()) Assert.True(env["value"] is null, $"{name} is written into the manifest");
            }
        // The keys reach the silo from the Secret the operator creates; without it the pod does not start.
        var keys = Assert.Single(SiloContainer(objects)["envFrom"]!.AsArray());
        Assert.Equal("spa-api-keys", (string?)keys!["secretRef"]!["name"]);
        Assert.NotEqual(true, (bool?)keys["secretRef"]!["optional"]);
        var grafana = Containers(Named(objects, "Deployment", "spa-grafana")).Single();
        var password = grafana["env"]!.AsArray().Single(e => (string?)e!["name"] == "GF_SECURITY_ADMIN_PASSWORD")!;
        Assert.Equal("spa-grafana", (string?)password["valueFrom"]!["secretKeyRef"]!["name"]);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public async Task EveryContainerHasProbesAndResources(string overlay)
    {
        var objects = await OverlayAsync(overlay);
        var workloads = Workloads(objects).ToList();
        Assert.Equal(4, workloads.Count);
        foreach (var workload in workloads)
            foreach (var container in Containers(workload))
            {
                var where = $"{workload["metadata"]!["name"]}/{container["name"]}";
                Assert.True(container["readinessProbe"] is not null, $"{where} has no readiness probe");
                Assert.True(container["livenessProbe"] is not null, $"{where} has no liveness probe");
                foreach (var bound in new[] { "requests", "limits" })
                    foreach (var resource in new[] { "cpu", "memory" })
                        Assert.True(container["resources"]?[bound]?[resource] is not null, $"{where} has no {resource} {bound}");
            }

        // /healthz answers 503 while the model loads: ready only then, and not killed before it is (the startup probe).
        var silo = SiloContainer(objects);
        foreach (var probe in new[] { "startupProbe", "readinessProbe", "livenessProbe" })
            Assert.Equal("/healthz", (string?)silo[probe]!["httpGet"]!["path"]);
        var startup = silo["startupProbe"]!;
        Assert.True((int)startup["periodSeconds"]! * (int)startup["failureThreshold"]! >= 600, "the startup probe allows less than 10 minutes to load the model");
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public async Task TheSiloPodIsAValidKubernetesHostingConfiguration(string overlay)
    {
        var objects = await OverlayAsync(overlay);
        var statefulSet = Named(objects, "StatefulSet", "spa-silo");
        var template = statefulSet["spec"]!["template"]!;
        var labels = template["metadata"]!["labels"]!;
        var annotations = template["metadata"]!["annotations"]!;
        Assert.Equal(("true", "8080", "/metrics"),
            ((string?)annotations["prometheus.io/scrape"], (string?)annotations["prometheus.io/port"], (string?)annotations["prometheus.io/path"]));

        // The pod's environment as the silo reads it: literal values, and the downward API's fields resolved as the
        // kubelet would for the first pod.
        var pod = new Dictionary<string, string?>
        {
            ["metadata.name"] = $"{statefulSet["metadata"]!["name"]}-0",
            ["metadata.namespace"] = (string?)statefulSet["metadata"]!["namespace"],
            ["status.podIP"] = "10.244.0.12",
        };
        foreach (var (label, value) in labels.AsObject()) pod[$"metadata.labels['{label}']"] = (string?)value;
        var silo = SiloContainer(objects);
        var environment = new Dictionary<string, string?>();
        foreach (var env in silo["env"]!.AsArray())
        {
            var field = (string?)env!["valueFrom"]?["fieldRef"]?["fieldPath"];
            environment[((string)env["name"]!).Replace("__", ":", StringComparison.Ordinal)] =
                field is null ? (string?)env["value"] : pod.GetValueOrDefault(field) ?? throw new InvalidOperationException($"no pod field {field}");
        }
        var modelPath = environment["Spa:Model:ModelPath"]!;
        var volume = Assert.Single(silo["volumeMounts"]!.AsArray(), m => modelPath.StartsWith((string)m!["mountPath"]! + "/", StringComparison.Ordinal))!;
        Assert.True((bool?)volume["readOnly"], "the model volume is mounted writable");
        // The checkpoint on the volume is not here: stand in the shared data's model for it.
        environment["Spa:Model:ModelPath"] = SharedData.Stories260K;

        var options = new SiloHostOptions().WithConfiguration(new ConfigurationBuilder().AddInMemoryCollection(environment).Build());
        options.Validate();
        Assert.True(options.InKubernetes);
        Assert.Equal(((string?)labels["orleans/clusterId"], (string?)labels["orleans/serviceId"]), (options.ClusterId, options.ServiceId));

        // Redis is the in-cluster service the silo names.
        var redis = Assert.IsType<DnsEndPoint>(Assert.Single(options.RedisConfiguration().EndPoints));
        var redisService = Named(objects, "Service", redis.Host);
        Assert.Contains(redisService["spec"]!["ports"]!.AsArray(), p => (int)p!["port"]! == redis.Port);

        // Orleans' Kubernetes hosting lists and watches the pods with the silo's service account.
        var account = (string)template["spec"]!["serviceAccountName"]!;
        var binding = OfKind(objects, "RoleBinding").Single(b => b["subjects"]!.AsArray().Any(s => (string?)s!["name"] == account));
        var role = Named(objects, "Role", (string)binding["roleRef"]!["name"]!);
        var podRule = role["rules"]!.AsArray().Single(r => r!["resources"]!.AsArray().Any(x => (string?)x == "pods"))!;
        Assert.Subset(podRule["verbs"]!.AsArray().Select(v => (string)v!).ToHashSet(), new HashSet<string> { "get", "list", "watch", "delete" });

        // Every Service and the PodDisruptionBudget select the silo pods; the StatefulSet names the headless one.
        var selectorOf = (JsonNode o) => o["spec"]!["selector"]!;
        foreach (var selecting in new[] { Named(objects, "Service", "spa-http"), Named(objects, "Service", "spa-gateway"), Named(objects, "Service", "spa-silo-headless") })
            foreach (var (key, value) in selectorOf(selecting).AsObject()) Assert.Equal((string?)value, (string?)labels[key]);
        foreach (var (key, value) in selectorOf(Named(objects, "PodDisruptionBudget", "spa-silo"))["matchLabels"]!.AsObject())
            Assert.Equal((string?)value, (string?)labels[key]);
        var headless = Named(objects, "Service", (string)statefulSet["spec"]!["serviceName"]!);
        Assert.Equal("None", (string?)headless["spec"]!["clusterIP"]);
        var ports = silo["ports"]!.AsArray().ToDictionary(p => (string)p!["name"]!, p => (int)p!["containerPort"]!);
        Assert.Equal((8080, options.SiloPort, options.GatewayPort), (ports["http"], ports["silo"], ports["gateway"]));
    }

    [Fact]
    public async Task TheModelLoaderIsValidAndMountsTheModelVolumeWritable()
    {
        var run = await ValidateAsync(await File.ReadAllTextAsync(Path.Combine(K8s, "model-loader.yaml")));
        Assert.True(run.ExitCode == 0, run.Stderr);
        var loader = Assert.Single(JsonNode.Parse(run.Stdout)!.AsArray())!;
        var claim = (string)Assert.Single(loader["spec"]!["volumes"]!.AsArray())!["persistentVolumeClaim"]!["claimName"]!;
        var objects = await OverlayAsync("cpu");
        Assert.Equal((string?)Named(objects, "PersistentVolumeClaim", claim)["metadata"]!["namespace"], (string?)loader["metadata"]!["namespace"]);
        var siloModels = Assert.Single(Named(objects, "StatefulSet", "spa-silo")["spec"]!["template"]!["spec"]!["volumes"]!.AsArray(),
            v => (string?)v!["persistentVolumeClaim"]?["claimName"] == claim)!;
        var siloMount = Assert.Single(SiloContainer(objects)["volumeMounts"]!.AsArray(), m => (string?)m!["name"] == (string?)siloModels["name"])!;
        var loaderMount = Assert.Single(Assert.Single(loader["spec"]!["containers"]!.AsArray())!["volumeMounts"]!.AsArray())!;
        // The copy instructions (docs/operations.md) name the loader's path; the silos read the same files at theirs.
        Assert.Equal((string?)siloMount["mountPath"], (string?)loaderMount["mountPath"]);
        Assert.NotEqual(true, (bool?)loaderMount["readOnly"]);
    }

    [Theory]
    [InlineData("unknown field", """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: spa-silo, namespace: spa}
        spec:
          template:
            spec:
              containers:
                - name: silo
                  livenessProb: {httpGet: {path: /healthz, port: http}}
        """, "StatefulSet/spa-silo: unknown field spec.template.spec.containers[0].livenessProb")]
    [InlineData("wrong type", """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: spa-silo, namespace: spa}
        spec: {replicas: two}
        """, "StatefulSet/spa-silo: data/spec/replicas must be integer")]
    [InlineData("missing required field", """
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: spa-silo, namespace: spa}
        spec: {selector: null}
        """, "StatefulSet/spa-silo: data/spec must have required property selector")]
    public async Task ABrokenManifestIsRejected(string breakage, string patch, string reason)
    {
        // An overlay of the rendered cpu manifests (kustomize reads files only under its root, so they are copied in)
        // with one patch that breaks one object.
        var directory = Directory.CreateTempSubdirectory("spa-k8s-broken-");
        try
        {
            await File.WriteAllTextAsync(Path.Combine(directory.FullName, "rendered.yaml"), await RenderAsync(Path.Combine(K8s, "overlays", "cpu")));
            await File.WriteAllTextAsync(Path.Combine(directory.FullName, "patch.yaml"), patch);
            await File.WriteAllTextAsync(Path.Combine(directory.FullName, "kustomization.yaml"), "resources: [rendered.yaml]\npatches: [{path: patch.yaml}]\n");
            var run = await ValidateAsync(await RenderAsync(directory.FullName));
            Assert.True(run.ExitCode == 1, $"the validator accepted a manifest with a {breakage} (exit {run.ExitCode}):\n{run.Stderr}");
            Assert.Contains(reason, run.Stderr);
            Assert.Contains("1 invalid", run.Stderr);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
