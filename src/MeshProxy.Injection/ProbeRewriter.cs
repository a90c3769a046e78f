using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshProxy.Config.Resources;

namespace MeshProxy.Injection;

/// <summary>
/// Rewrites the app's kubelet probes to the sidecar, as Istio does. With inbound capture, the kubelet's plaintext
/// httpGet or grpc probe of an app port lands on the sidecar's inbound listener, which under STRICT mTLS refuses a
/// caller without a certificate; a tcpSocket probe is accepted by the sidecar itself and says nothing about the app.
/// So each such probe becomes an httpGet of <c>/app-health/&lt;container&gt;/livez|readyz|startupz</c> on the stats
/// port (never captured), and the original, with named ports resolved, goes to the sidecar in
/// <see cref="SidecarEnvironment.AppProbers"/>; the sidecar (its AppProbes) performs it against the app on 127.0.0.1.
/// </summary>
internal static class ProbeRewriter
{

    private static readonly (string Field, string Name)[] Kinds = [("livenessProbe", "livez"), ("readinessProbe", "readyz"), ("startupProbe", "startupz")];

    /// <summary>Rewrites the probes of <paramref name="containers"/> in place; returns the originals by their new path.</summary>
    public static JsonObject Rewrite(JsonArray containers)
    {
        var probers = new JsonObject();
        foreach (var container in containers.OfType<JsonObject>())
        {
            var name = container["name"]?.GetValueKind() == JsonValueKind.String ? container["name"]!.GetValue<string>() : null;
            if (name is null)
            {
                continue;
            }

            foreach (var (field, kind) in Kinds)
            {
                if (container[field] is not JsonObject probe || Original(name, field, container, probe) is not { } original)
                {
                    continue;
                }

                var path = SidecarEnvironment.AppHealthPath(name, kind);
                probers[path] = original;

                // Rebuilt in the original's member order, the action swapped for the sidecar's, so a reader sees the same probe.
                var rewritten = new JsonObject();
                foreach (var (key, value) in probe)
                {
                    rewritten[key is "tcpSocket" or "grpc" ? "httpGet" : key] = key is "httpGet" or "tcpSocket" or "grpc"
                        ? new JsonObject { ["path"] = path, ["port"] = SidecarInjector.StatsPort, ["scheme"] = "HTTP" }
                        : value?.DeepClone();
                }

                container[field] = rewritten;
            }
        }

        return probers;
    }

    /// <summary>The probe as the sidecar must perform it, or null for one that needs no rewriting.</summary>
    private static JsonObject? Original(string container, string field, JsonObject owner, JsonObject probe)
    {
        var where = $"container '{container}' {field}";
        JsonObject action;
        if (probe["httpGet"] is JsonObject httpGet)
        {
            action = new JsonObject();
            foreach (var (key, value) in httpGet)
            {
                action[key] = value?.DeepClone();
            }

            action["port"] = Port(where + ".httpGet", owner, httpGet["port"]);
            if (action["scheme"] is null)
            {
                action["scheme"] = "HTTP";
            }
        }
        else if (probe["tcpSocket"] is JsonObject tcpSocket)
        {
            action = new JsonObject { ["port"] = Port(where + ".tcpSocket", owner, tcpSocket["port"]) };
        }
        else if (probe["grpc"] is JsonObject grpc)
        {
            action = new JsonObject { ["port"] = GrpcPort(where + ".grpc", grpc["port"]) };
            if (grpc["service"] is { } service)
            {
                action["service"] = service.GetValueKind() == JsonValueKind.String
                    ? service.GetValue<string>()
                    : throw new InjectionException($"{where}.grpc.service: must be a string");
            }
        }
        else
        {
            return null; // exec runs inside the container: nothing to capture
        }

        // A probe of another host is not the pod's traffic and is never captured.
        if (action["host"] is not null)
        {
            return null;
        }

        var original = new JsonObject { [probe["httpGet"] is not null ? "httpGet" : probe["tcpSocket"] is not null ? "tcpSocket" : "grpc"] = action };
        if (probe["timeoutSeconds"] is { } timeout)
        {
            original["timeoutSeconds"] = timeout.DeepClone();
        }

        return original;
    }

    /// <summary>
    /// A grpc probe's port: Kubernetes declares it an integer and its API server refuses a name, so a name here (a
    /// manifest kube-inject reads before the API server has seen it) is an error rather than something to resolve.
    /// </summary>
    private static int GrpcPort(string where, JsonNode? port) =>
        port is JsonValue value && value.GetValueKind() == JsonValueKind.Number
            ? int.TryParse(value.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 65535
                ? n
                : throw new InjectionException($"{where}.port: {value.ToJsonString()} is not a port (1-65535)")
            : throw new InjectionException($"{where}.port: must be a port number; Kubernetes does not allow named ports in grpc probes");

    /// <summary>A probe's port as a number: a number as it is, a name looked up in the container's ports.</summary>
    private static int Port(string where, JsonObject container, JsonNode? port)
    {
        if (port is JsonValue value && value.GetValueKind() == JsonValueKind.Number)
        {
            return int.TryParse(value.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 65535
                ? n
                : throw new InjectionException($"{where}.port: {value.ToJsonString()} is not a port (1-65535)");
        }

        if (port is JsonValue text && text.GetValueKind() == JsonValueKind.String)
        {
            var name = text.GetValue<string>();
            if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 65535)
            {
                return n;
            }

            var declared = (container["ports"] as JsonArray ?? []).OfType<JsonObject>()
                .FirstOrDefault(p => p["name"]?.GetValueKind() == JsonValueKind.String && p["name"]!.GetValue<string>() == name);
            return declared?["containerPort"] is JsonValue containerPort && containerPort.GetValueKind() == JsonValueKind.Number &&
                   int.TryParse(containerPort.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var resolved) && resolved is > 0 and <= 65535
                ? resolved
                : throw new InjectionException($"{where}.port: '{name}' is not a named port of the container");
        }

        throw new InjectionException($"{where}.port: must be a port number or the name of one of the container's ports");
    }
}
