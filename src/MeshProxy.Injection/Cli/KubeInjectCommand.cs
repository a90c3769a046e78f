using System.CommandLine;
using MeshProxy.Injection.Manifests;

namespace MeshProxy.Injection.Cli;

/// <summary>
/// <c>kube-inject -f in.yaml [-o out.yaml]</c>: the webhook's injection applied to manifests offline.
/// Add it to a CLI with <c>root.Subcommands.Add(KubeInjectCommand.Create());</c>.
/// </summary>
public static class KubeInjectCommand
{
    public static Command Create()
    {
        var file = new Option<string>("--filename", "-f") { Description = "the manifests to inject ('-' for standard input)", Required = true };
        var output = new Option<string?>("--output", "-o") { Description = "where to write the injected manifests (default: standard output)" };
        var sidecarImage = new Option<string>("--sidecar-image") { Description = "the sidecar's image", DefaultValueFactory = _ => new InjectorOptions().SidecarImage };
        var initImage = new Option<string>("--init-image") { Description = "the init step's image", DefaultValueFactory = _ => new InjectorOptions().InitImage };
        var controlPlane = new Option<string>("--control-plane") { Description = "the control plane's address for the sidecar", DefaultValueFactory = _ => new InjectorOptions().ControlPlaneAddress };
        var kubernetesVersion = new Option<string>("--kubernetes-version") { Description = "the cluster's version: 1.29 and later get native sidecars", DefaultValueFactory = _ => "1.29" };

        var command = new Command("kube-inject", "Add the init step and the sidecar to Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob manifests")
        {
            file, output, sidecarImage, initImage, controlPlane, kubernetesVersion,
        };
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var path = parse.GetValue(file)!;
            try
            {
                var options = new InjectorOptions
                {
                    SidecarImage = parse.GetValue(sidecarImage)!,
                    InitImage = parse.GetValue(initImage)!,
                    ControlPlaneAddress = parse.GetValue(controlPlane)!,
                    NativeSidecars = InjectorOptions.SupportsNativeSidecars(parse.GetValue(kubernetesVersion)!),
                };
                var input = path == "-" ? Console.In.ReadToEnd() : File.ReadAllText(path);
                var result = new KubeInjector(options).Transform(input);
                if (parse.GetValue(output) is { } outputPath)
                {
                    File.WriteAllText(outputPath, result.Yaml);
                }
                else
                {
                    stdout.Write(result.Yaml);
                }

                foreach (var report in result.Reports.Where(r => r.Outcome is not null))
                {
                    stderr.WriteLine($"{report.Kind}/{report.Name}: {report.Detail}");
                }

                return 0;
            }
            catch (Exception ex) when (ex is InjectionException or FormatException or IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"kube-inject: {path}: {ex.Message}");
                return 1;
            }
        });
        return command;
    }
}
