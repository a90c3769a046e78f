using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Hosting;
using MeshProxy.Identity;

// First, before anything can make a TLS context: limits key exchange to elliptic curves (see TlsKeyExchange).
TlsKeyExchange.Restrict();

const string Usage = """
    usage: meshproxy-controlplane --config-dir <dir> [--grpc <addr:port>] [--monitoring <addr:port>]
           meshproxy-controlplane --source kubernetes [--kubeconfig <file>] [--config-dir <dir>] ...

      --config-dir <dir>        directory of resource YAML files, watched; also MESHPROXY_CONFIG_DIR
      --source <s>              directory (default) or kubernetes: Services, EndpointSlices and Pods from the
                                Kubernetes API (in-cluster service account, or --kubeconfig), beside the directory's
                                resources when --config-dir is given too
      --kubeconfig <file>       with --source kubernetes: the kubeconfig to use instead of the in-cluster account
      --cluster-domain <d>      with --source kubernetes: a Service answers to name.ns.svc.<d>, default cluster.local
      --webhook-configuration <name>, --webhook-service <ns>/<name>, --webhook-secret <name>
                                with --source kubernetes and a CA: keep the injector's serving certificate (in that
                                Secret, in the Service's namespace) and the MutatingWebhookConfiguration's caBundle
                                issued by the mesh CA
      --grpc <addr:port>        gRPC (h2c) listener, default 0.0.0.0:15010
      --monitoring <addr:port>  /ready, /metrics, /debug/syncz, /debug/configz; default 0.0.0.0:15014
      --keepalive-time <s>      HTTP/2 PING after this many idle seconds, default 30
      --keepalive-timeout <s>   a PING unanswered this long closes the connection (sidecar dropped), default 10
      --push-timeout <s>        a snapshot write blocked this long (sidecar not reading) closes the stream, default 30
    """ + CertificateServiceOptions.Usage;

var configDir = Environment.GetEnvironmentVariable("MESHPROXY_CONFIG_DIR");
var options = new ControlPlaneOptions { ConfigDirectory = string.Empty };
var kubernetes = false;
var clusterDomain = "cluster.local";
string? webhookConfiguration = null, webhookService = null, webhookSecret = null;
CertificateServiceOptions? certificates = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--config-dir" when i + 1 < args.Length:
            configDir = args[++i];
            break;
        case "--grpc" when i + 1 < args.Length && IPEndPoint.TryParse(args[i + 1], out var grpc):
            options = options with { GrpcEndPoint = grpc };
            i++;
            break;
        case "--monitoring" when i + 1 < args.Length && IPEndPoint.TryParse(args[i + 1], out var monitoring):
            options = options with { MonitoringEndPoint = monitoring };
            i++;
            break;
        case "--keepalive-time" when i + 1 < args.Length && Seconds(args[i + 1]) is { } time:
            options = options with { KeepAlivePingDelay = time };
            i++;
            break;
        case "--keepalive-timeout" when i + 1 < args.Length && Seconds(args[i + 1]) is { } timeout:
            options = options with { KeepAlivePingTimeout = timeout };
            i++;
            break;
        case "--push-timeout" when i + 1 < args.Length && Seconds(args[i + 1]) is { } push:
            options = options with { PushWriteTimeout = push };
            i++;
            break;
        case "--source" when i + 1 < args.Length && args[i + 1] is "kubernetes" or "directory":
            kubernetes = args[++i] == "kubernetes";
            break;
        case "--kubeconfig" when i + 1 < args.Length:
            options = options with { Kubeconfig = args[++i] };
            break;
        case "--cluster-domain" when i + 1 < args.Length && args[i + 1].Length > 0:
            clusterDomain = args[++i];
            break;
        case "--webhook-configuration" when i + 1 < args.Length && args[i + 1].Length > 0:
            webhookConfiguration = args[++i];
            break;
        case "--webhook-service" when i + 1 < args.Length && args[i + 1].Split('/') is [{ Length: > 0 }, { Length: > 0 }]:
            webhookService = args[++i];
            break;
        case "--webhook-secret" when i + 1 < args.Length && args[i + 1].Length > 0:
            webhookSecret = args[++i];
            break;
        case var _ when CertificateServiceOptions.TryReadArgument(args, ref i, ref certificates):
            break;
        case "--help" or "-h":
            Console.WriteLine(Usage);
            return 0;
        default:
            Console.Error.WriteLine($"meshproxy-controlplane: bad argument '{args[i]}'");
            Console.Error.WriteLine(Usage);
            return 2;
    }
}

if (kubernetes)
{
    options = options with { Kubernetes = new MeshProxy.ControlPlane.Kubernetes.KubernetesSourceOptions { ClusterDomain = clusterDomain } };
    configDir ??= string.Empty;
}
else if (options.Kubeconfig is not null)
{
    Console.Error.WriteLine("meshproxy-controlplane: --kubeconfig needs --source kubernetes");
    return 2;
}

if (webhookConfiguration is not null || webhookService is not null || webhookSecret is not null)
{
    if (webhookConfiguration is null || webhookService is null || webhookSecret is null || !kubernetes || certificates is null)
    {
        Console.Error.WriteLine("meshproxy-controlplane: --webhook-configuration, --webhook-service and --webhook-secret go together, with --source kubernetes and a CA (--ca-dir or --ca-cert-chain/--ca-key/--ca-root)");
        return 2;
    }

    var service = webhookService.Split('/');
    options = options with { Webhook = new MeshProxy.ControlPlane.Kubernetes.Webhook.WebhookCertificateOptions(webhookConfiguration, service[0], service[1], webhookSecret) };
}

if (configDir is null)
{
    Console.Error.WriteLine("meshproxy-controlplane: no configuration: pass --config-dir <dir> or set MESHPROXY_CONFIG_DIR");
    return 2;
}

ControlPlaneHost host;
try
{
    host = await ControlPlaneHost.StartAsync(options with { ConfigDirectory = configDir, Certificates = certificates });
}
catch (ConfigException ex)
{
    Console.Error.WriteLine($"meshproxy-controlplane: configuration directory '{configDir}' is invalid:");
    foreach (var error in ex.Errors)
    {
        Console.Error.WriteLine($"  {error}");
    }

    return 1;
}
catch (DirectoryNotFoundException ex)
{
    Console.Error.WriteLine($"meshproxy-controlplane: {ex.Message}");
    return 1;
}
catch (IOException ex)
{
    Console.Error.WriteLine($"meshproxy-controlplane: cannot start listening: {ex.Message}");
    return 1;
}
catch (k8s.Exceptions.KubeConfigException ex)
{
    Console.Error.WriteLine($"meshproxy-controlplane: Kubernetes: {ex.Message}");
    return 1;
}
catch (CertificateAuthorityException ex)
{
    Console.Error.WriteLine($"meshproxy-controlplane: certificate authority: {ex.Message}");
    return 1;
}

await using (host)
{
    await host.WaitForShutdownAsync();
}

return 0;

// Whole or fractional seconds, at least 0.1 s and at most a day; anything else is a bad argument.
static TimeSpan? Seconds(string text) =>
    double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) && s >= 0.1 && s <= 86400
        ? TimeSpan.FromSeconds(s)
        : null;
