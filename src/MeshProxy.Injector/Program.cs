using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using MeshProxy.Injection;
using MeshProxy.Injection.Cli;
using MeshProxy.Injection.Hosting;

// meshproxy-injector serve ...: the injection webhook, until the control plane hosts it itself.
// meshproxy-injector kube-inject ...: the same injection offline (the meshproxy CLI carries the same command).
var defaults = new InjectorOptions();
var listen = new Option<string>("--listen") { Description = "address:port of the HTTPS listener", DefaultValueFactory = _ => $"0.0.0.0:{WebhookServerOptions.DefaultPort}" };
var cert = new Option<string>("--tls-cert") { Description = "PEM certificate (the webhook configuration's caBundle must sign it)", Required = true };
var key = new Option<string>("--tls-key") { Description = "PEM private key", Required = true };
var sidecarImage = new Option<string>("--sidecar-image") { DefaultValueFactory = _ => defaults.SidecarImage };
var initImage = new Option<string>("--init-image") { DefaultValueFactory = _ => defaults.InitImage };
var controlPlane = new Option<string>("--control-plane") { Description = "the control plane's address for the sidecars", DefaultValueFactory = _ => defaults.ControlPlaneAddress };
var kubernetesVersion = new Option<string>("--kubernetes-version") { Description = "the cluster's version: 1.29 and later get native sidecars", DefaultValueFactory = _ => "1.29" };
var failClosed = new Option<bool>("--fail-closed") { Description = "refuse pods that cannot be injected instead of admitting them without a sidecar" };
var tokenAudience = new Option<string>("--token-audience") { DefaultValueFactory = _ => defaults.TokenAudience };

var serve = new Command("serve", "Serve the injection webhook: POST /inject, GET /healthz over HTTPS")
{
    listen, cert, key, sidecarImage, initImage, controlPlane, kubernetesVersion, failClosed, tokenAudience,
};
serve.SetAction(async (parse, cancellationToken) =>
{
    var stderr = parse.InvocationConfiguration.Error;
    if (!IPEndPoint.TryParse(parse.GetValue(listen)!, out var endpoint))
    {
        await stderr.WriteLineAsync($"meshproxy-injector: --listen '{parse.GetValue(listen)}' is not address:port");
        return 2;
    }

    WebhookServerOptions options;
    try
    {
        options = new WebhookServerOptions
        {
            Listen = endpoint,
            CertificateFile = parse.GetValue(cert)!,
            KeyFile = parse.GetValue(key)!,
            Injector = new InjectorOptions
            {
                SidecarImage = parse.GetValue(sidecarImage)!,
                InitImage = parse.GetValue(initImage)!,
                ControlPlaneAddress = parse.GetValue(controlPlane)!,
                NativeSidecars = InjectorOptions.SupportsNativeSidecars(parse.GetValue(kubernetesVersion)!),
                FailClosed = parse.GetValue(failClosed),
                TokenAudience = parse.GetValue(tokenAudience)!,
            },
        };
    }
    catch (FormatException ex)
    {
        await stderr.WriteLineAsync($"meshproxy-injector: {ex.Message}");
        return 2;
    }

    InjectionWebhookServer server;
    try
    {
        server = await InjectionWebhookServer.StartAsync(options, cancellationToken: cancellationToken);
    }
    catch (Exception ex) when (ex is IOException or CryptographicException or ArgumentException or UnauthorizedAccessException)
    {
        await stderr.WriteLineAsync($"meshproxy-injector: cannot start: {ex.Message}");
        return 1;
    }

    await using (server)
    {
        await parse.InvocationConfiguration.Output.WriteLineAsync($"meshproxy-injector: webhook listening on https://{endpoint.Address}:{server.Port}{WebhookServerOptions.InjectPath}");
        await server.WaitForShutdownAsync(CancellationToken.None);
    }

    return 0;
});

var root = new RootCommand("MeshProxy sidecar injector") { serve, KubeInjectCommand.Create() };
return await root.Parse(args).InvokeAsync();
