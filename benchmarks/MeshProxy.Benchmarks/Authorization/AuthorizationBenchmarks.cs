using System.Net;
using System.Text;
using BenchmarkDotNet.Attributes;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Authorization;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Benchmarks.Authorization;

/// <summary>
/// The per-request cost of authorization. With N policies, half are DENY policies that do not match
/// and half ALLOW policies of which only the last matches, so every policy is looked at (worst case).
/// </summary>
[MemoryDiagnoser]
public class AuthorizationBenchmarks
{
    private AuthorizationEngine _engine = null!;
    private AuthorizationRequest _request;

    [Params(1, 100)]
    public int Policies { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var yaml = new StringBuilder();
        var allows = Math.Max(1, Policies / 2);
        for (var i = 0; i < Policies - allows; i++)
        {
            yaml.Append($$"""
                ---
                apiVersion: meshproxy.io/v1alpha1
                kind: AuthorizationPolicy
                metadata: { name: deny-{{i}}, namespace: billing }
                spec:
                  action: DENY
                  rules:
                  - from: [{ source: { namespaces: ["dev-{{i}}"] } }]
                    to: [{ operation: { paths: ["/admin", "/admin/*"] } }]

                """);
        }

        for (var i = 0; i < allows; i++)
        {
            yaml.Append($$"""
                ---
                apiVersion: meshproxy.io/v1alpha1
                kind: AuthorizationPolicy
                metadata: { name: allow-{{i}}, namespace: billing }
                spec:
                  selector: { matchLabels: { app: billing } }
                  rules:
                  - from: [{ source: { principals: ["cluster.local/ns/store-{{i}}/sa/store"], ipBlocks: ["10.0.0.0/8"] } }]
                    to: [{ operation: { methods: ["POST"], paths: ["/charges", "/charges/*"], ports: ["8080"] } }]
                    when:
                    - key: request.headers[x-tenant]
                      values: ["acme"]

                """);
        }

        var policies = ResourceParser.ParseText(yaml.ToString(), "bench.yaml").ThrowIfInvalid().OfKind<AuthorizationPolicyResource>();
        _engine = AuthorizationEngine.Build(policies, "billing", new Dictionary<string, string> { ["app"] = "billing" });
        var headers = new HeaderDictionary { ["x-tenant"] = "acme" };
        _request = new AuthorizationRequest(
            $"spiffe://cluster.local/ns/store-{allows - 1}/sa/store", IPAddress.Parse("10.1.2.3"),
            "billing.billing.svc.cluster.local", 8080, "POST", "/charges/42", headers);
        if (!_engine.Evaluate(_request).Allowed)
        {
            throw new InvalidOperationException("the benchmark request must be allowed by the last ALLOW policy");
        }
    }

    [Benchmark]
    public bool Evaluate() => _engine.Evaluate(_request).Allowed;
}

[MemoryDiagnoser]
public class PathNormalizerBenchmarks
{
    [Params("/api/v1/charges/42/refund", "//api/./v1/%63harges/x/../42/%2e%2e/42/refund")]
    public string Path { get; set; } = string.Empty;

    [Benchmark]
    public string Normalize() => PathNormalizer.TryNormalize(Path, MeshProxy.Config.Resources.PathNormalizationSpec.Default, out var normalized, out _) ? normalized : string.Empty;
}
