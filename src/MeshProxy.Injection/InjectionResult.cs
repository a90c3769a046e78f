using System.Text.Json.Nodes;

namespace MeshProxy.Injection;

public enum InjectionOutcome
{
    /// <summary>The pod now has the init step and the sidecar.</summary>
    Injected,

    /// <summary>Not selected (opted out, host network, not enabled): returned unchanged.</summary>
    Skipped,

    /// <summary>Injected before: returned unchanged.</summary>
    AlreadyInjected,
}

/// <summary>The injected pod (or the input, unchanged) and why.</summary>
public sealed record InjectionResult(InjectionOutcome Outcome, JsonObject Pod, string Reason);

/// <summary>Who the pod is, beyond what the pod object itself says.</summary>
/// <param name="Namespace">The admission request's namespace (a pod being created often has none of its own).</param>
/// <param name="WorkloadName">The controller's name when known (kube-inject reads it from the Deployment); else derived from the pod.</param>
/// <param name="NamespaceEnabled">Whether the namespace asked for injection; a pod's own label or annotation overrides it.</param>
public sealed record InjectionTarget(string Namespace, string? WorkloadName = null, bool NamespaceEnabled = true);

/// <summary>A pod that cannot be injected as asked; the message says which field or annotation and why.</summary>
public sealed class InjectionException(string message) : Exception(message);
