using MeshProxy.Samples.App;

// usage: meshproxy-sample-app <name> <port> [outbound-proxy-url]
if (args.Length < 2 || !int.TryParse(args[1], out var port))
{
    Console.Error.WriteLine("usage: meshproxy-sample-app <name> <port> [outbound-proxy-url]");
    return 2;
}

var app = SampleApp.Build(args[0], port, args.Length > 2 ? args[2] : null);
await app.RunAsync();
return 0;
