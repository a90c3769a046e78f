using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.Metrics;
using MeshProxy.Authorization;
using MeshProxy.Sidecar.Authorization;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Sidecar.Tests.Authorization;

/// <summary>The inbound pipeline's whole authorization step (path, request, evaluation, report) on an allowed request: no allocation.</summary>
public sealed class StepAllocationTests
{
    [Fact]
    public void The_authorization_step_allocates_nothing_on_an_allowed_request_with_a_clean_path()
    {
        var snapshot = SnapshotBuilder.Build(ResourceParser.ParseText("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: billing, namespace: test }
            spec:
              workload: { serviceAccount: billing }
              app: { port: 8080 }
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: store-charges, namespace: test }
            spec:
              rules:
                - to: [{ operation: { methods: ["POST"], paths: ["/charges"] } }]
            """, "mesh.yaml"), "v1", "mesh.yaml", DateTimeOffset.UnixEpoch);
        var metrics = new ProxyMetrics(new MetricsRegistry());
        var context = new DefaultHttpContext();
        context.Request.Method = "POST";
        context.Request.Path = "/charges";
        context.Request.QueryString = new QueryString("?id=7");
        context.Request.Host = new HostString("billing");
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = "/charges?id=7";
        context.Connection.RemoteIpAddress = IPAddress.Loopback;

        bool Step()
        {
            if (!MethodGuard.IsAcceptable(context.Request.Method) || !InboundAuthorization.TryNormalizePath(context, snapshot.Mesh.PathNormalization, out var path, out _))
            {
                return false;
            }

            InboundAuthorization.UseNormalizedPath(context, path);
            var request = InboundAuthorization.RequestOf(context, snapshot, path);
            var decision = snapshot.Authorization.Evaluate(request);
            InboundAuthorization.Report(metrics, NullLogger.Instance, context, request, decision);
            return decision.Allowed;
        }

        // Warm-up: the metric series is created on the first call; prometheus-net also allocates once on the
        // first lookup of a child that exists (88 B, then never again), so the measured loop starts after a few.
        for (var i = 0; i < 3; i++)
        {
            Assert.True(Step());
        }

        Allocations.AssertNone(() => Step(), calls: 1000);
        Assert.Null(context.Features.Get<AuthorizedPathFeature>());
    }
}
