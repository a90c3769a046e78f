using System.CommandLine;
using k8s;
using k8s.Autorest;
using MeshProxy.Cli.Install;

namespace MeshProxy.Cli;

/// <summary>
/// `meshproxy proxy-status`: every sidecar of the mesh and its sync state, in the shape of istioctl proxy-status. Each
/// control-plane replica knows only its own streams, so every replica is asked (<see cref="ControlPlaneReplicas"/>) and
/// the table says which one serves each sidecar. Exit 1 when a replica could not be read (its sidecars are missing).
/// </summary>
internal static class ProxyStatusCommand
{
    private static readonly Uri LocalControlPlane = new("http://127.0.0.1:15014");

    public static Command Create()
    {
        var controlPlane = new Option<Uri[]>("--control-plane")
        {
            Description = "A control-plane replica's monitoring address (repeat for each replica); without it, every replica is found through the Kubernetes API, or http://127.0.0.1:15014 when there is no kubeconfig",
            AllowMultipleArgumentsPerToken = false,
        };
        var kubeconfig = new Option<string?>("--kubeconfig") { Description = "The kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the pod's service account)" };
        var ns = new Option<string>("--namespace", "-n") { Description = "The control plane's namespace", DefaultValueFactory = _ => new InstallOptions().Namespace };
        var revision = new Option<string>("--revision") { Description = "The control-plane revision to ask", DefaultValueFactory = _ => InstallOptions.DefaultRevision };
        var command = new Command("proxy-status", "Every sidecar connected to any control-plane replica and whether it has applied its latest snapshot") { controlPlane, kubeconfig, ns, revision };
        command.SetAction(async (parse, ct) =>
        {
            var addresses = parse.GetValue(controlPlane) ?? [];
            var path = parse.GetValue(kubeconfig);
            if (addresses.Length > 0 || (path is null && !HasKubeconfig()))
            {
                return await RunAsync(addresses.Length > 0 ? addresses : [LocalControlPlane], Console.Out, Console.Error, ct);
            }

            if (KubeconfigClient.TryCreate(path, "meshproxy proxy-status", Console.Error) is not { } client)
            {
                return 1;
            }

            using (client)
            {
                var install = new InstallOptions { Namespace = parse.GetValue(ns)!, Revision = parse.GetValue(revision)! };
                if (install.Validate() is { } invalid)
                {
                    Console.Error.WriteLine($"meshproxy proxy-status: {invalid}");
                    return 2;
                }

                return await RunAsync(client, install, Console.Out, Console.Error, ct);
            }
        });
        return command;
    }

    /// <summary>The replicas at these monitoring addresses.</summary>
    public static async Task<int> RunAsync(IReadOnlyList<Uri> controlPlanes, TextWriter output, TextWriter error, CancellationToken cancellationToken) =>
        Report(await ControlPlaneReplicas.ReadAsync(controlPlanes, cancellationToken), "at the addresses given", output, error);

    /// <summary>Every running replica of the control plane <paramref name="install"/> names, through the Kubernetes API.</summary>
    public static async Task<int> RunAsync(IKubernetes client, InstallOptions install, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        FleetStatus fleet;
        try
        {
            fleet = await ControlPlaneReplicas.ReadAsync(client, install, cancellationToken);
        }
        catch (Exception ex) when (ex is HttpOperationException or HttpRequestException or TaskCanceledException)
        {
            error.WriteLine($"meshproxy proxy-status: cannot list the control plane's pods in {install.Namespace}: {(ex is HttpOperationException http ? $"HTTP {(int)http.Response.StatusCode}" : ex.Message)}");
            return 1;
        }

        if (fleet.Replicas.Count == 0)
        {
            error.WriteLine($"meshproxy proxy-status: no running pod of {install.Namespace}/{install.ControlPlane} (labels app={install.ControlPlane},{InstallOptions.RevisionLabel}={install.Revision})");
            return 1;
        }

        return Report(fleet, $"pods of {install.Namespace}/{install.ControlPlane}", output, error);
    }

    internal static string Render(IReadOnlyList<SyncRow> rows, DateTimeOffset now)
    {
        string[] header = ["NAME", "NAMESPACE", "ADDRESS", "CONTROL PLANE", "VERSION ACKED", "VERSION SENT", "STATUS", "LAST SEEN"];
        var table = new List<string[]> { header };
        foreach (var r in rows)
        {
            var status = r.Status ?? "STALE";
            if (status == "NACK" && r.LastNack?.Error is { } e)
            {
                status = $"NACK ({Truncate(e, 60)})";
            }

            table.Add([r.InstanceId, r.Namespace, r.Address, r.Replica, Or(r.AckedVersion), Or(r.SentVersion), status, Ago(now - r.LastSeen)]);
        }

        var widths = Enumerable.Range(0, header.Length).Select(i => table.Max(row => row[i].Length)).ToArray();
        var text = new System.Text.StringBuilder();
        foreach (var row in table)
        {
            for (var i = 0; i < row.Length; i++)
            {
                text.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 3));
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    private static int Report(FleetStatus fleet, string asked, TextWriter output, TextWriter error)
    {
        output.Write(Render(fleet.Rows, DateTimeOffset.UtcNow));
        foreach (var replica in fleet.Unreachable)
        {
            error.WriteLine($"meshproxy proxy-status: cannot read /debug/syncz of {replica}: its sidecars are not listed");
        }

        if (fleet.Unreachable.Count > 0)
        {
            error.WriteLine($"meshproxy proxy-status: {fleet.Replicas.Count - fleet.Unreachable.Count} of {fleet.Replicas.Count} replicas ({asked}) answered");
        }

        return fleet.Unreachable.Count == 0 ? 0 : 1;
    }

    /// <summary>Whether a Kubernetes API is configured here: in a pod, $KUBECONFIG, or ~/.kube/config (kubectl's order).</summary>
    private static bool HasKubeconfig() =>
        KubernetesClientConfiguration.IsInCluster()
        || Environment.GetEnvironmentVariable("KUBECONFIG") is { Length: > 0 }
        || File.Exists(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kube", "config"));

    private static string Or(string? version) => string.IsNullOrEmpty(version) ? "-" : version;

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..(max - 3)] + "...";

    private static string Ago(TimeSpan t) =>
        t.TotalSeconds < 1 ? "now" : t.TotalMinutes < 1 ? $"{(int)t.TotalSeconds}s ago" : t.TotalHours < 1 ? $"{(int)t.TotalMinutes}m ago" : $"{(int)t.TotalHours}h ago";
}
