using System.Text;
using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Sidecar.Tests.Resilience.InMemory;

/// <summary>What the caller got from one request.</summary>
/// <param name="Flags">The x-meshproxy-response-flags header (null: none).</param>
/// <param name="ElapsedMs">Fake time from the request's start to its answer.</param>
internal sealed record Reply(int Status, string? Flags, string Body, ForwardResult Result, IHeaderDictionary Headers, long ElapsedMs);

/// <summary>
/// The outbound attempt loop (<see cref="ResilientForwarder"/>) of a snapshot built from YAML exactly as the
/// sidecar builds it, for service "svc" on port 80 with endpoints 127.0.0.1:port, sending through a
/// <see cref="ScriptedUpstream"/> on a <see cref="FakeClockLoop"/>. No socket, no wall clock.
/// </summary>
internal sealed class InMemoryForwarder
{
    private readonly ResilientForwarder _forwarder;
    private readonly VirtualHost _service;

    public InMemoryForwarder(int[] endpointPorts, string? extraYaml = null)
    {
        var yaml = new MeshYaml("client", 1).Service("svc", 80, "HTTP", endpointPorts);
        if (extraYaml is not null)
        {
            yaml.Raw(extraYaml);
        }

        Snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(yaml.ToString(), "test.yaml"), "v1", "test.yaml", DateTimeOffset.UnixEpoch);
        if (!Snapshot.Services.TryResolve("svc", 80, out var service))
        {
            throw new InvalidOperationException("no service svc:80 in the snapshot");
        }

        _service = service!;
        Upstream = new ScriptedUpstream(Loop.Time, () => Loop.NowMs);
        _forwarder = new ResilientForwarder(Upstream, Loop.Time, NullLogger<ResilientForwarder>.Instance);
    }

    public FakeClockLoop Loop { get; } = new();

    public ScriptedUpstream Upstream { get; }

    public SidecarSnapshot Snapshot { get; }

    /// <summary>Service "svc"'s own cluster.</summary>
    public Cluster Cluster => _service.DefaultCluster;

    /// <summary>The cluster's state as /config_dump shows it now (fake time).</summary>
    public ResilienceState Dump() => ResilienceDump.Of(Cluster, ResilienceClock.Milliseconds(Loop.Time));

    /// <summary>Sends one request through route matching and the attempt loop, as the outbound pipeline does. Call on the loop.</summary>
    public async Task<Reply> SendAsync(string method, string path, string? body = null, Action<HttpRequest>? configure = null, CancellationToken aborted = default)
    {
        var context = new DefaultHttpContext();
        var request = context.Request;
        request.Method = method;
        request.Path = path;
        request.Host = new HostString("svc");
        request.Protocol = "HTTP/1.1";
        request.Scheme = "http";
        if (body is not null)
        {
            var bytes = Encoding.UTF8.GetBytes(body);
            request.Body = new MemoryStream(bytes);
            request.ContentLength = bytes.Length;
        }

        configure?.Invoke(request);
        var responseBody = new MemoryStream();
        context.Response.Body = responseBody;
        context.RequestAborted = aborted;

        RouteRule? rule = null;
        var cluster = _service.DefaultCluster;
        if (_service.Rules.Count > 0)
        {
            rule = _service.Match(request) ?? throw new InvalidOperationException($"no rule matches {method} {path}");
            cluster = rule.PickCluster();
        }

        var started = Loop.NowMs;
        var result = await _forwarder.ForwardAsync(context, cluster, rule);
        var flags = context.Response.Headers[LocalReply.FlagsHeader].ToString();
        return new Reply(context.Response.StatusCode, flags.Length == 0 ? null : flags, Encoding.UTF8.GetString(responseBody.ToArray()),
            result, context.Response.Headers, Loop.NowMs - started);
    }

    /// <summary>Runs one request to its end on the fake clock.</summary>
    public Reply Send(string method, string path, string? body = null, Action<HttpRequest>? configure = null) =>
        Loop.Run(() => SendAsync(method, path, body, configure));
}
