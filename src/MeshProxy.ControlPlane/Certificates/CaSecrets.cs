using System.Globalization;
using System.Text;
using k8s.Models;
using MeshProxy.Identity;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// What the CA signs with, as text: the signing certificate (then its intermediates), its key, the root(s) it must chain
/// to, and the trust bundle it publishes (its roots plus, during a rotation, the other root). Kept in memory only.
/// </summary>
/// <param name="Origin">Where it came from, for messages ("Secret meshproxy-system/cacerts").</param>
/// <param name="Phase">The self-managed root's rotation phase; <see cref="RotationPhase.None"/> for a plug-in CA.</param>
internal sealed record CaPem(string ChainPem, string KeyPem, string RootsPem, string BundlePem, string Origin, RotationPhase Phase)
{
    /// <summary>The identity of this material: a change of any key makes a different one.</summary>
    public bool SameAs(CaPem other) => ChainPem == other.ChainPem && KeyPem == other.KeyPem && RootsPem == other.RootsPem && BundlePem == other.BundlePem;
}

/// <summary>Where a self-managed root stands in a rotation (README "Root rotation").</summary>
internal enum RotationPhase
{
    /// <summary>One root signs and is the whole bundle.</summary>
    None,

    /// <summary>The current root signs; the next root is already in the bundle.</summary>
    Adding,

    /// <summary>The next root has become the current one and signs; the previous root stays in the bundle.</summary>
    Switched,

    /// <summary>A plug-in CA (Secret cacerts) appeared: the self-managed root still signs; the plug-in's roots joined the bundle.</summary>
    PluginAdding,

    /// <summary>The plug-in CA signs; the self-managed root stays in the bundle until every certificate it signed expired.</summary>
    PluginSwitched,

    /// <summary>The switch is done: the plug-in CA signs and is the whole bundle; the self-managed root is kept only as a record.</summary>
    Plugin,
}

/// <summary>
/// The self-managed root as its Secret keeps it: <c>root-cert.pem</c>/<c>root-key.pem</c> (the root that signs); while
/// rotating, <c>next-root-cert.pem</c>/<c>next-root-key.pem</c> (phase Adding) or <c>previous-root-cert.pem</c> (phase
/// Switched), with the phase and when it began in annotations. Every replica derives what it signs with and the bundle it
/// publishes from this one object, so they cannot disagree for longer than one refresh.
/// </summary>
/// <remarks>
/// The switch to a plug-in CA that appears while the mesh runs on the self-managed root follows the same three steps,
/// recorded here too so that every replica agrees: PluginAdding (<see cref="NextCertPem"/> holds the plug-in's roots, no
/// key: that stays in Secret cacerts), PluginSwitched, then Plugin, after which the replicas follow cacerts alone. A
/// cacerts whose roots change after PluginSwitched sends the switch back to PluginAdding with the new roots, the roots
/// that signed until then kept in <see cref="PreviousCertPem"/> for one more wait.
/// </remarks>
internal sealed record CaRootState(string RootCertPem, string RootKeyPem, RotationPhase Phase, DateTimeOffset Since, string? NextCertPem, string? NextKeyPem, string? PreviousCertPem, bool RotationRequested)
{
    /// <summary>What a replica signs with in this state; <paramref name="plugin"/> is Secret cacerts as read now (null: absent).</summary>
    /// <exception cref="CertificateAuthorityException">The state needs the plug-in CA to sign and it is absent.</exception>
    public CaPem ToPem(string origin, CaPem? plugin = null) => Phase switch
    {
        RotationPhase.Adding => new(RootCertPem, RootKeyPem, RootCertPem, RootCertPem + NextCertPem, origin, Phase),
        RotationPhase.Switched => new(RootCertPem, RootKeyPem, RootCertPem, RootCertPem + PreviousCertPem, origin, Phase),
        // PreviousCertPem: the roots of a plug-in CA that signed before cacerts changed them (a restarted switch), still
        // trusted until what it signed has expired.
        RotationPhase.PluginAdding => new(RootCertPem, RootKeyPem, RootCertPem, RootCertPem + NextCertPem + PreviousCertPem, origin, Phase),
        // cacerts no longer holds the roots recorded at the switch: its signer would chain to roots the published bundle
        // lacks. Until the leader records the restart (NextStep), the self-managed root, which every bundle of the switch
        // holds, signs, and the bundle takes the new roots beside the recorded ones, exactly as the restart will publish.
        RotationPhase.PluginSwitched when plugin is not null && plugin.RootsPem != NextCertPem =>
            new(RootCertPem, RootKeyPem, RootCertPem, RootCertPem + plugin.RootsPem + NextCertPem, origin, Phase),
        // cacerts is gone (or unreadable) after the switch: nobody may sign with it any more (a replica that restarts could
        // not), and stopping issuance would let every certificate expire. The self-managed root, in every bundle of the
        // switch, signs again under that same bundle, as the leader's next step (NextStep: back to Switched) will record.
        RotationPhase.PluginSwitched when plugin is null => new(RootCertPem, RootKeyPem, RootCertPem, RootCertPem + NextCertPem, origin, Phase),
        RotationPhase.PluginSwitched => PluginOrThrow(plugin, origin) with { BundlePem = NextCertPem + RootCertPem, Phase = Phase },
        RotationPhase.Plugin => PluginOrThrow(plugin, origin),
        _ => new(RootCertPem, RootKeyPem, RootCertPem, RootCertPem, origin, Phase),
    };

    private static CaPem PluginOrThrow(CaPem? plugin, string origin) =>
        plugin ?? throw new CertificateAuthorityException($"{origin} says the mesh has switched to the plug-in CA, but its Secret (cacerts) is gone: restore it");
}

/// <summary>Reads and writes the CA's Secrets. Pure: no I/O, so every malformed shape is a unit test.</summary>
internal static class CaSecrets
{
    public const string RootCert = "root-cert.pem";
    public const string RootKey = "root-key.pem";
    public const string NextRootCert = "next-root-cert.pem";
    public const string NextRootKey = "next-root-key.pem";
    public const string PreviousRootCert = "previous-root-cert.pem";
    public const string PhaseAnnotation = "meshproxy.io/rotation-phase";
    public const string SinceAnnotation = "meshproxy.io/rotation-since";

    /// <summary>An operator sets it (any value) to ask for a root rotation; the leader removes it when it starts one.</summary>
    public const string RotateAnnotation = "meshproxy.io/rotate-root";

    // Istio's plug-in CA layout (Secret "cacerts").
    public const string PluginCaCert = "ca-cert.pem";
    public const string PluginCaKey = "ca-key.pem";
    public const string PluginRootCert = "root-cert.pem";
    public const string PluginCertChain = "cert-chain.pem";

    /// <exception cref="CertificateAuthorityException">A key is missing or empty, or the phase annotations are not ours.</exception>
    public static CaRootState ReadRoot(V1Secret secret)
    {
        var origin = Name(secret);
        var phase = Annotation(secret, PhaseAnnotation) switch
        {
            null => RotationPhase.None,
            "adding" => RotationPhase.Adding,
            "switched" => RotationPhase.Switched,
            "plugin-adding" => RotationPhase.PluginAdding,
            "plugin-switched" => RotationPhase.PluginSwitched,
            "plugin" => RotationPhase.Plugin,
            var other => throw new CertificateAuthorityException($"{origin}: annotation {PhaseAnnotation} is '{other}'; expected adding, switched, plugin-adding, plugin-switched or plugin (or none)"),
        };
        var since = DateTimeOffset.MinValue;
        if (phase is not (RotationPhase.None or RotationPhase.Plugin) && !DateTimeOffset.TryParse(Annotation(secret, SinceAnnotation), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out since))
        {
            throw new CertificateAuthorityException($"{origin}: annotation {SinceAnnotation} must be an RFC 3339 time during a rotation");
        }

        return new CaRootState(
            Text(secret, RootCert, origin),
            Text(secret, RootKey, origin),
            phase,
            since,
            phase is RotationPhase.Adding or RotationPhase.PluginAdding or RotationPhase.PluginSwitched ? Text(secret, NextRootCert, origin) : null,
            phase == RotationPhase.Adding ? Text(secret, NextRootKey, origin) : null,
            phase == RotationPhase.Switched ? Text(secret, PreviousRootCert, origin) : phase == RotationPhase.PluginAdding ? OptionalText(secret, PreviousRootCert) : null,
            Annotation(secret, RotateAnnotation) is not null);
    }

    /// <summary>Istio's plug-in layout: sign with ca-cert.pem/ca-key.pem, send cert-chain.pem, trust root-cert.pem.</summary>
    /// <exception cref="CertificateAuthorityException">A key is missing, or ca-cert.pem is not the first certificate of cert-chain.pem.</exception>
    public static CaPem ReadPlugin(V1Secret secret)
    {
        var origin = Name(secret);
        var missing = new[] { PluginCaCert, PluginCaKey, PluginRootCert, PluginCertChain }.Where(k => secret.Data?.TryGetValue(k, out var v) != true || v is not { Length: > 0 }).ToList();
        if (missing.Count > 0)
        {
            throw new CertificateAuthorityException($"{origin} is not a plug-in CA: it lacks {string.Join(", ", missing)} (Istio's layout: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)");
        }

        var caCert = Text(secret, PluginCaCert, origin);
        var chain = Text(secret, PluginCertChain, origin);
        var roots = Text(secret, PluginRootCert, origin);
        if (FirstCertificate(caCert) is not { } first || FirstCertificate(chain) is not { } chainFirst || first != chainFirst)
        {
            throw new CertificateAuthorityException($"{origin}: {PluginCertChain} must begin with the certificate in {PluginCaCert} (the signing certificate, then its intermediates)");
        }

        return new CaPem(chain, Text(secret, PluginCaKey, origin), roots, roots, origin, RotationPhase.None);
    }

    /// <summary>The Secret holding <paramref name="state"/>; its metadata (name, resourceVersion for the update's precondition) from <paramref name="current"/>.</summary>
    public static V1Secret Write(V1ObjectMeta metadata, CaRootState state)
    {
        var data = new Dictionary<string, byte[]>
        {
            [RootCert] = Encoding.UTF8.GetBytes(state.RootCertPem),
            [RootKey] = Encoding.UTF8.GetBytes(state.RootKeyPem),
        };
        var annotations = new Dictionary<string, string>(metadata.Annotations ?? new Dictionary<string, string>());
        annotations.Remove(PhaseAnnotation);
        annotations.Remove(SinceAnnotation);
        if (!state.RotationRequested)
        {
            annotations.Remove(RotateAnnotation);
        }

        if (state.Phase != RotationPhase.None)
        {
            annotations[PhaseAnnotation] = PhaseName(state.Phase);
        }

        if (state.Phase is not (RotationPhase.None or RotationPhase.Plugin))
        {
            annotations[SinceAnnotation] = state.Since.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
        }

        if (state.Phase == RotationPhase.Adding)
        {
            data[NextRootCert] = Encoding.UTF8.GetBytes(state.NextCertPem!);
            data[NextRootKey] = Encoding.UTF8.GetBytes(state.NextKeyPem!);
        }
        else if (state.Phase is RotationPhase.PluginAdding or RotationPhase.PluginSwitched)
        {
            data[NextRootCert] = Encoding.UTF8.GetBytes(state.NextCertPem!);
            if (state.Phase == RotationPhase.PluginAdding && state.PreviousCertPem is { } previous)
            {
                data[PreviousRootCert] = Encoding.UTF8.GetBytes(previous);
            }
        }
        else if (state.Phase == RotationPhase.Switched)
        {
            data[PreviousRootCert] = Encoding.UTF8.GetBytes(state.PreviousCertPem!);
        }

        return new V1Secret
        {
            ApiVersion = "v1",
            Kind = "Secret",
            Type = "Opaque",
            Metadata = new V1ObjectMeta
            {
                Name = metadata.Name,
                NamespaceProperty = metadata.NamespaceProperty,
                ResourceVersion = metadata.ResourceVersion,
                Labels = metadata.Labels ?? new Dictionary<string, string> { ["app.kubernetes.io/part-of"] = "meshproxy" },
                Annotations = annotations.Count == 0 ? null : annotations,
            },
            Data = data,
        };
    }

    /// <summary>
    /// The next step of a rotation, or null when there is none yet: start one when asked (annotation) or when the root has
    /// less than a tenth of its life left; move from Adding to Switched, and from Switched to done, once
    /// <paramref name="wait"/> has passed since the phase began, so that no certificate issued before it is still valid
    /// (the caller makes <paramref name="wait"/> the longest certificate lifetime plus how stale a replica's view may be).
    /// </summary>
    /// <param name="pluginRoots">The roots of the plug-in CA in Secret cacerts, read now; null when there is none (or it is broken).
    /// One appearing while the self-managed root signs starts the switch to it (after any root rotation in progress), with
    /// the same waits; one that changes its roots before the switch starts the wait again; one that goes away before the
    /// switch cancels it (the self-managed root never stopped signing). One whose roots change after the switch (its
    /// signer would chain to roots the bundle lacks) sends it back to PluginAdding with the new roots, keeping the roots
    /// that signed in the bundle until the next wait has passed; only then does the plug-in CA sign again. One that goes
    /// away after the switch sends the mesh back to the self-managed root (phase Switched, the plug-in's roots as the
    /// previous ones), which drops them after one more wait.</param>
    public static CaRootState? NextStep(CaRootState state, DateTimeOffset now, TimeSpan wait, Func<(string Cert, string Key)> newRoot, string? pluginRoots = null)
    {
        switch (state.Phase)
        {
            case RotationPhase.None when pluginRoots is not null:
                return state with { Phase = RotationPhase.PluginAdding, Since = now, NextCertPem = pluginRoots, NextKeyPem = null, PreviousCertPem = null };
            case RotationPhase.PluginAdding when pluginRoots is null && (state.PreviousCertPem is null || now >= state.Since + wait):
                return state with { Phase = RotationPhase.None, Since = DateTimeOffset.MinValue, NextCertPem = null, PreviousCertPem = null };
            case RotationPhase.PluginAdding when pluginRoots is null:
                // A plug-in CA signed until the restart: its roots stay trusted (PreviousCertPem) until what it signed expired.
                return null;
            case RotationPhase.PluginAdding when pluginRoots != state.NextCertPem:
                return state with { Since = now, NextCertPem = pluginRoots };
            case RotationPhase.PluginAdding when now >= state.Since + wait:
                return state with { Phase = RotationPhase.PluginSwitched, Since = now, PreviousCertPem = null };
            case RotationPhase.PluginSwitched when pluginRoots is not null && pluginRoots != state.NextCertPem:
                return state with { Phase = RotationPhase.PluginAdding, Since = now, NextCertPem = pluginRoots, PreviousCertPem = state.NextCertPem };
            case RotationPhase.PluginSwitched when pluginRoots is null:
                // cacerts deleted (or broken) after the switch: back to the self-managed root, as after a root rotation's
                // switch, the plug-in's roots kept in the bundle (previous-root-cert.pem) until what it signed has expired.
                return new CaRootState(state.RootCertPem, state.RootKeyPem, RotationPhase.Switched, now, null, null, state.NextCertPem, state.RotationRequested);
            case RotationPhase.PluginSwitched when now >= state.Since + wait:
                return state with { Phase = RotationPhase.Plugin, Since = DateTimeOffset.MinValue, NextCertPem = null };
            case RotationPhase.None when state.RotationRequested || NearExpiry(state.RootCertPem, now):
                var (cert, key) = newRoot();
                return state with { Phase = RotationPhase.Adding, Since = now, NextCertPem = cert, NextKeyPem = key, RotationRequested = false };
            case RotationPhase.Adding when now >= state.Since + wait:
                return new CaRootState(state.NextCertPem!, state.NextKeyPem!, RotationPhase.Switched, now, null, null, state.RootCertPem, state.RotationRequested);
            case RotationPhase.Switched when now >= state.Since + wait:
                return state with { Phase = RotationPhase.None, Since = DateTimeOffset.MinValue, PreviousCertPem = null };
            default:
                return null;
        }
    }

    /// <summary>The phase as the Secret's annotation spells it (and the logs say it).</summary>
    public static string PhaseName(RotationPhase phase) => phase switch
    {
        RotationPhase.Adding => "adding",
        RotationPhase.Switched => "switched",
        RotationPhase.PluginAdding => "plugin-adding",
        RotationPhase.PluginSwitched => "plugin-switched",
        RotationPhase.Plugin => "plugin",
        _ => "none",
    };

    public static string Name(V1Secret secret) => $"Secret {secret.Metadata?.NamespaceProperty}/{secret.Metadata?.Name}";

    private static bool NearExpiry(string certPem, DateTimeOffset now)
    {
        using var cert = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(certPem);
        var life = cert.NotAfter - cert.NotBefore;
        return cert.NotAfter.ToUniversalTime() - now.UtcDateTime < life / 10;
    }

    private static string? Annotation(V1Secret secret, string name) =>
        secret.Metadata?.Annotations is { } a && a.TryGetValue(name, out var value) ? value : null;

    private static string? OptionalText(V1Secret secret, string key) =>
        secret.Data is { } data && data.TryGetValue(key, out var bytes) && bytes is { Length: > 0 } ? Encoding.UTF8.GetString(bytes) : null;

    private static string Text(V1Secret secret, string key, string origin) =>
        secret.Data is { } data && data.TryGetValue(key, out var bytes) && bytes is { Length: > 0 }
            ? Encoding.UTF8.GetString(bytes)
            : throw new CertificateAuthorityException($"{origin} has no {key}");

    private static string? FirstCertificate(string pem) =>
        System.Security.Cryptography.PemEncoding.TryFind(pem, out var fields) ? pem[fields.Base64Data].Replace("\n", string.Empty, StringComparison.Ordinal).Replace("\r", string.Empty, StringComparison.Ordinal) : null;
}
