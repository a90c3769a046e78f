using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Admin;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>
/// Settings the injector passes through the sidecar container's environment rather than the bootstrap resource:
/// they describe the pod the sidecar runs in (its app's probes, whether to follow the app out, the pod's own
/// override of its Sidecar spec), not the mesh.
/// </summary>
/// <param name="CertificateTtl">The lifetime the CA client asks for (<c>validity_seconds</c>, Istio's <c>SECRET_TTL</c>); null: the mesh's certificateTtl.</param>
internal sealed record PodEnvironment(IReadOnlyDictionary<string, AppProbe> AppProbes, bool ExitOnAppExit, SidecarOverride? SidecarOverride = null, TimeSpan? CertificateTtl = null)
{
    /// <summary>
    /// A shorter certificate lifetime than MeshConfig's certificateTtl for this sidecar (the CA clamps a longer one to
    /// maxCertificateTtl). Nothing sets it by default; tests with real sidecar processes and lifetimes of seconds do.
    /// </summary>
    public const string CertificateTtlVariable = "MESHPROXY_CERTIFICATE_TTL";

    /// <summary>Reads the environment; throws <see cref="PodEnvironmentException"/> naming the variable and what is wrong.</summary>
    public static PodEnvironment Read(Func<string, string?> variable)
    {
        IReadOnlyDictionary<string, AppProbe> probes = new Dictionary<string, AppProbe>();
        if (variable(Admin.AppProbes.EnvironmentVariable) is { Length: > 0 } json)
        {
            try
            {
                probes = Admin.AppProbes.Parse(json);
            }
            catch (FormatException ex)
            {
                throw new PodEnvironmentException(ex.Message);
            }
        }

        var exit = variable(AppExitWatcher.EnvironmentVariable)?.Trim().ToLowerInvariant() switch
        {
            null or "" or "false" => false,
            "true" => true,
            var other => throw new PodEnvironmentException($"{AppExitWatcher.EnvironmentVariable}: '{other}' must be true or false"),
        };
        SidecarOverride? sidecarOverride = null;
        if (variable(SidecarOverride.EnvironmentVariable) is { Length: > 0 } text)
        {
            // The same reader the injector validated the pod's annotation with: errors read
            // "MESHPROXY_PROXY_CONFIG:1: field: reason".
            var parsed = SidecarOverrideParser.Parse(text, SidecarOverride.EnvironmentVariable);
            sidecarOverride = parsed.Override ?? throw new PodEnvironmentException(string.Join(Environment.NewLine, parsed.Errors));
        }

        TimeSpan? ttl = null;
        if (variable(CertificateTtlVariable) is { Length: > 0 } ttlText)
        {
            ttl = Durations.TryParse(ttlText.Trim(), out var parsedTtl) && parsedTtl >= TimeSpan.FromSeconds(1)
                ? parsedTtl
                : throw new PodEnvironmentException($"{CertificateTtlVariable}: '{ttlText}' is not a duration of at least 1s (written like 30s, 10m, 24h)");
        }

        return new PodEnvironment(probes, exit, sidecarOverride, ttl);
    }
}

/// <summary>A pod setting in the environment that cannot be used; the sidecar refuses to start with it.</summary>
internal sealed class PodEnvironmentException(string message) : Exception(message);
