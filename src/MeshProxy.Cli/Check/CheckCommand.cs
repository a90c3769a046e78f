using System.CommandLine;
using k8s;
using MeshProxy.Cli.Install;

namespace MeshProxy.Cli.Check;

/// <summary>
/// <c>meshproxy check [--pre]</c>: one line per check under its group's heading, a reason under each failure, exit 1
/// when any failed (the shape of <c>linkerd check</c>), so a script or CI job can gate on it.
/// </summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var pre = new Option<bool>("--pre") { Description = "Before installing: the API, the installer's permissions, the CRDs" };
        var kubeconfig = new Option<string?>("--kubeconfig") { Description = "The kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the pod's service account)" };
        var ns = new Option<string>("--namespace", "-n") { Description = "The control plane's namespace", DefaultValueFactory = _ => new InstallOptions().Namespace };
        var revision = new Option<string>("--revision") { Description = "The revision to check", DefaultValueFactory = _ => InstallOptions.DefaultRevision };
        var command = new Command("check", "Check a cluster before (--pre) or after installing: one line per check, exit 1 if any fails") { pre, kubeconfig, ns, revision };
        command.SetAction(async (parse, ct) =>
        {
            if (KubeconfigClient.TryCreate(parse.GetValue(kubeconfig), "meshproxy check", Console.Error) is not { } client)
            {
                return 1;
            }

            using (client)
            {
                var install = new InstallOptions { Namespace = parse.GetValue(ns)!, Revision = parse.GetValue(revision)! };
                return await RunAsync(client, install, parse.GetValue(pre), TimeProvider.System, Console.Out, ct);
            }
        });
        return command;
    }

    public static async Task<int> RunAsync(IKubernetes client, InstallOptions install, bool preInstall, TimeProvider time, TextWriter output, CancellationToken cancellationToken)
    {
        if (install.Validate() is { } invalid)
        {
            output.WriteLine($"meshproxy check: {invalid}");
            return 2;
        }

        string? group = null;
        var ok = await new MeshChecks(client, install, time).RunAsync(preInstall, result =>
        {
            if (result.Group != group)
            {
                output.WriteLine(group is null ? result.Group : $"\n{result.Group}");
                output.WriteLine(new string('-', result.Group.Length));
                group = result.Group;
            }

            output.WriteLine(result.Ok
                ? $"√ {result.Name}{(result.Detail.Length > 0 ? $" ({result.Detail})" : string.Empty)}"
                : $"× {result.Name}\n    {result.Detail}");
        }, cancellationToken);
        output.WriteLine();
        output.WriteLine(ok ? "Status check results are √" : "Status check results are ×");
        return ok ? 0 : 1;
    }
}
