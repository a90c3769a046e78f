using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

/// <summary>MeshConfig extensionProviders: Istio's envoyExtAuthzGrpc, its defaults, and each bad field named with its reason.</summary>
public sealed class ExtensionProviderParserTests
{
    private const string Header = """
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: { name: mesh, namespace: meshproxy-system }
        spec:
          extensionProviders:

        """;

    private static ParseResult Parse(string providers) => ResourceParser.ParseText(Header + providers, "mesh.yaml");

    [Fact]
    public void A_grpc_provider_reads_every_field_and_istio_spellings()
    {
        var result = Parse("""
              - name: opa
                envoyExtAuthzGrpc:
                  service: opa-system/opa.opa-system.svc.cluster.local
                  port: 9191
                  timeout: 250ms
                  failOpen: true
                  statusOnError: "503"
                  includeRequestHeadersInCheck: ["authorization", "X-User-*"]
                  headersToUpstreamOnAllow: ["x-user"]
                  headersToDownstreamOnDeny: ["*-reason"]
                  includeRequestBodyInCheck: { maxRequestBytes: 4096, allowPartialMessage: true, packAsBytes: true }
              - name: defaults
                envoyExtAuthzGrpc: { service: 10.0.0.7, port: 9000 }
            """);
        Assert.True(result.IsValid, string.Join("; ", result.Errors));
        var providers = Assert.IsType<MeshConfigResource>(Assert.Single(result.Resources)).Spec.ExtensionProviders;
        var opa = providers[0].ExtAuthzGrpc;
        Assert.Equal("opa", providers[0].Name);
        Assert.Equal("opa.opa-system.svc.cluster.local", opa.Service); // the namespace/ prefix is Istio's scoping, not part of the host
        Assert.Equal(9191, opa.Port);
        Assert.Equal(TimeSpan.FromMilliseconds(250), opa.Timeout);
        Assert.True(opa.FailOpen);
        Assert.Equal(503, opa.StatusOnError);
        Assert.Equal(["authorization", "x-user-*"], opa.IncludeRequestHeadersInCheck);
        Assert.Equal(["x-user"], opa.HeadersToUpstreamOnAllow);
        Assert.Equal(["*-reason"], opa.HeadersToDownstreamOnDeny);
        Assert.Equal(new RequestBodyInCheck(4096, AllowPartialMessage: true, PackAsBytes: true), opa.IncludeRequestBodyInCheck);

        var defaults = providers[1].ExtAuthzGrpc;
        Assert.Equal(TimeSpan.FromMinutes(10), defaults.Timeout);
        Assert.False(defaults.FailOpen);
        Assert.Equal(403, defaults.StatusOnError);
        Assert.Empty(defaults.IncludeRequestHeadersInCheck);
        Assert.Null(defaults.IncludeRequestBodyInCheck);
    }

    [Theory]
    [InlineData("- envoyExtAuthzGrpc: { service: a, port: 1 }", "spec.extensionProviders[0].name", "is required")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1 }\n- name: a\n  envoyExtAuthzGrpc: { service: b, port: 1 }", "spec.extensionProviders[1].name", "names another provider")]
    [InlineData("- name: a", "spec.extensionProviders[0].envoyExtAuthzGrpc", "is required")]
    [InlineData("- name: a\n  envoyExtAuthzHttp: { service: a, port: 1 }", "spec.extensionProviders[0].envoyExtAuthzHttp", "gRPC")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { port: 1 }", "spec.extensionProviders[0].envoyExtAuthzGrpc.service", "is required")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: 'not a host', port: 1 }", "spec.extensionProviders[0].envoyExtAuthzGrpc.service", "not a host name")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a }", "spec.extensionProviders[0].envoyExtAuthzGrpc.port", "is required")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 70000 }", "spec.extensionProviders[0].envoyExtAuthzGrpc.port", "between 1 and 65535")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1, timeout: 0s }", "spec.extensionProviders[0].envoyExtAuthzGrpc.timeout", "")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1, statusOnError: '99' }", "spec.extensionProviders[0].envoyExtAuthzGrpc.statusOnError", "not an HTTP status")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1, headersToUpstreamOnAllow: ['x-*-y'] }", "spec.extensionProviders[0].envoyExtAuthzGrpc.headersToUpstreamOnAllow", "not a header name")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1, includeRequestBodyInCheck: { allowPartialMessage: true } }", "spec.extensionProviders[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes", "is required")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1, includeRequestBodyInCheck: { maxRequestBytes: 0 } }", "spec.extensionProviders[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes", "between 1 and 16777216")]
    [InlineData("- name: a\n  envoyExtAuthzGrpc: { service: a, port: 1, includeRequestBodyInCheck: { maxRequestBytes: 10, allowPartialMessage: maybe } }", "spec.extensionProviders[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.allowPartialMessage", "")]
    public void Bad_providers_are_refused_at_their_field_with_the_reason(string providers, string path, string reason)
    {
        var indented = string.Join('\n', providers.Split('\n').Select(l => "  " + l));
        var result = Parse(indented + "\n");
        var error = Assert.Single(result.Errors, e => e.FieldPath == path);
        Assert.Equal("mesh.yaml", error.File);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
    }
}
