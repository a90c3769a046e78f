[assembly: AssemblyFixture(typeof(MeshProxy.Identity.Tests.TlsKeyExchangeFixture))]

namespace MeshProxy.Identity.Tests;

/// <summary>
/// Limits this test process's TLS key exchange before any test makes a TLS context, as the sidecar and the
/// control plane do at start: .NET reuses native TLS contexts, and one made earlier keeps OpenSSL's defaults.
/// </summary>
public sealed class TlsKeyExchangeFixture
{
    public TlsKeyExchangeFixture() => Outcome = TlsKeyExchange.Restrict();

    /// <summary>Null when the limit is in force.</summary>
    public string? Outcome { get; }
}
