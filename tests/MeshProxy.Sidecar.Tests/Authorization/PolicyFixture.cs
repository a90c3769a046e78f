using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Authorization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace MeshProxy.Sidecar.Tests.Authorization;

/// <summary>Policies written as operators write them (YAML through the real parser), and requests to test them with.</summary>
internal static class PolicyFixture
{
    public const string Store = "spiffe://cluster.local/ns/store/sa/store";
    public const string Ops = "spiffe://cluster.local/ns/ops/sa/admin";

    public static readonly IReadOnlyDictionary<string, string> BillingLabels = new Dictionary<string, string> { ["app"] = "billing", ["version"] = "v1" };

    public static IReadOnlyList<AuthorizationPolicyResource> Policies(string yaml)
    {
        var result = ResourceParser.ParseText(yaml, "test.yaml").ThrowIfInvalid();
        return [.. result.OfKind<AuthorizationPolicyResource>()];
    }

    public static AuthorizationEngine Engine(string yaml, string workloadNamespace = "billing", IReadOnlyDictionary<string, string>? labels = null, string rootNamespace = AuthorizationEngine.DefaultRootNamespace) =>
        AuthorizationEngine.Build(Policies(yaml), workloadNamespace, labels ?? BillingLabels, rootNamespace);

    /// <summary>One policy document: name, namespace, annotations and the spec body (indented by the caller as under "spec:").</summary>
    public static string Policy(string name, string spec, string ns = "billing", string? annotations = null) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata:
          name: {name}
          namespace: {ns}
        {(annotations is null ? string.Empty : "  annotations:\n    " + annotations)}
        spec:
        {Indent(spec)}

        """;

    private static string Indent(string text) => string.Join('\n', text.Split('\n').Select(line => "  " + line));

    /// <summary>One row of a decision table: a request and the explanation expected for it.</summary>
    public sealed record Case(
        string Expected,
        string? Principal = Store,
        string Method = "POST",
        string Path = "/charges",
        string Host = "billing.billing.svc.cluster.local",
        int Port = 8080,
        string Ip = "10.1.2.3",
        (string Name, string[] Values)[]? Headers = null,
        string? Sni = null)
    {
        public AuthorizationRequest ToRequest() =>
            Request(Principal, Method, Path, Host, Port, Ip, Headers is null ? null : PolicyFixture.Headers(Headers), Sni);
    }

    /// <summary>Evaluates every row and reports all the rows that disagree, not just the first.</summary>
    public static void Check(AuthorizationEngine engine, params Case[] cases)
    {
        var failures = new List<string>();
        foreach (var c in cases)
        {
            var request = c.ToRequest();
            var actual = engine.Evaluate(request).Explain();
            if (actual != c.Expected)
            {
                failures.Add($"{c}\n    expected: {c.Expected}\n    actual:   {actual}");
            }
        }

        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    public static AuthorizationRequest Request(
        string? principal = Store,
        string method = "POST",
        string path = "/charges",
        string host = "billing.billing.svc.cluster.local",
        int port = 8080,
        string ip = "10.1.2.3",
        IHeaderDictionary? headers = null,
        string? sni = null) =>
        new(principal, IPAddress.Parse(ip), host, port, method, path, headers, sni);

    public static HeaderDictionary Headers(params (string Name, string[] Values)[] headers)
    {
        var dictionary = new HeaderDictionary();
        foreach (var (name, values) in headers)
        {
            dictionary[name] = new StringValues(values);
        }

        return dictionary;
    }
}
