using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Hosting;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Identity;

public sealed class IdentityConfigTests
{
    [Fact]
    public void Missing_identity_files_stop_start_up_with_a_clear_error()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-mtls-missing-").FullName;
        var files = new TlsFiles(Path.Combine(dir, "nope.pem"), Path.Combine(dir, "nope.key"), Path.Combine(dir, "root.pem"));
        var path = new MeshYaml("billing", 8080, tls: files).WriteTo(dir);
        var ex = Assert.Throws<ConfigException>(() => SidecarHost.Build(path));
        var error = Assert.Single(ex.Errors);
        Assert.Equal("spec.tls", error.FieldPath);
        Assert.Contains("nope.pem", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void An_svid_from_another_trust_domain_stops_start_up()
    {
        var pki = MeshPki.Shared;
        var dir = Directory.CreateTempSubdirectory("meshproxy-mtls-td-").FullName;
        var files = pki.WriteFiles(Path.Combine(dir, "tls"), "otherTrustDomain");
        var path = new MeshYaml("store", 8080, tls: files).WriteTo(dir);
        var ex = Assert.Throws<ConfigException>(() => SidecarHost.Build(path));
        Assert.Contains("WrongTrustDomain", Assert.Single(ex.Errors).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Relative_paths_are_read_from_the_configuration_files_directory()
    {
        var yaml = """
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: a, namespace: test }
            spec:
              app: { port: 8080 }
              tls: { certificateChainFile: certs/chain.pem, privateKeyFile: certs/key.pem, trustBundleFile: /etc/mesh/root.pem }
            """;
        var parsed = ResourceParser.ParseText(yaml, "/srv/mesh/bootstrap.yaml");
        Assert.Empty(parsed.Errors);
        var tls = parsed.OfKind<MeshProxy.Config.Resources.SidecarResource>().Single().Spec.Tls!;
        Assert.Equal("/srv/mesh/certs/chain.pem", tls.CertificateChainFile);
        Assert.Equal("/srv/mesh/certs/key.pem", tls.PrivateKeyFile);
        Assert.Equal("/etc/mesh/root.pem", tls.TrustBundleFile);
    }
}
