using System.CommandLine;
using MeshProxy.Identity.Bootstrap;

namespace MeshProxy.Cli;

/// <summary>
/// <c>meshproxy token create|revoke</c>: the local bootstrap tokens a sidecar presents to the control
/// plane's CA. The token is printed once, alone on stdout (so <c>&gt; token-file</c> captures just it); the
/// store keeps only its hash. The control plane re-reads the store when it changes, so no restart is needed.
/// </summary>
internal static class TokenCommand
{
    public static Command Create()
    {
        var ns = new Option<string>("--namespace", "-n") { Description = "The workload's namespace", Required = true };
        var sa = new Option<string>("--service-account") { Description = "The workload's service account", Required = true };
        var store = new Option<string>("--store") { Description = "The token store file (the control plane's --token-store)", Required = true };

        var create = new Command("create", "Create (or replace) the token of a namespace/service account and print it once") { ns, sa, store };
        create.SetAction(parse => Run(parse.GetValue(store)!, Console.Error, s =>
        {
            var token = s.CreateToken(parse.GetValue(ns)!, parse.GetValue(sa)!);
            Console.Out.WriteLine(token);
            Console.Error.WriteLine($"token for {parse.GetValue(ns)}/{parse.GetValue(sa)} created; it is shown only now (the store keeps its hash): put it in the sidecar's controlPlane.tokenFile");
            return 0;
        }));

        var revoke = new Command("revoke", "Forget the token of a namespace/service account") { ns, sa, store };
        revoke.SetAction(parse => Run(parse.GetValue(store)!, Console.Error, s =>
        {
            if (s.Revoke(parse.GetValue(ns)!, parse.GetValue(sa)!))
            {
                Console.Error.WriteLine($"token for {parse.GetValue(ns)}/{parse.GetValue(sa)} revoked");
                return 0;
            }

            Console.Error.WriteLine($"meshproxy: no token for {parse.GetValue(ns)}/{parse.GetValue(sa)} in {parse.GetValue(store)}");
            return 1;
        }));

        return new Command("token", "Local bootstrap tokens for the control plane's certificate authority") { create, revoke };
    }

    private static int Run(string storePath, TextWriter error, Func<LocalTokenStore, int> action)
    {
        try
        {
            return action(LocalTokenStore.Open(storePath));
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidDataException or IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"meshproxy: {ex.Message}");
            return 1;
        }
    }
}
