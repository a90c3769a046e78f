using k8s;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Kubernetes.CustomResources;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.CustomResources;

public sealed class CustomResourceReaderTests
{
    internal static CustomObject Object(string json) => KubernetesJson.Deserialize<CustomObject>(json);

    [Fact]
    public void A_meshproxy_object_becomes_the_resource_its_file_would_and_the_pushed_text_parses_to_the_same()
    {
        var read = CustomResourceReader.Read(Object("""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"HttpRoute",
             "metadata":{"name":"reviews","namespace":"shop","generation":3,"uid":"u1","resourceVersion":"42","labels":{"team":"a"},
                         "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"huge\":true}","note":"x"}},
             "spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews-v1"},"weight":90},{"destination":{"host":"reviews-v2"},"weight":10}],"timeout":"3s"}]},
             "status":{"conditions":[]}}
            """));

        Assert.Empty(read.Errors);
        Assert.Equal("HttpRoute/shop/reviews", read.Key);
        var route = Assert.IsType<HttpRouteResource>(read.Resource!.Resource);
        Assert.Equal([90, 10], route.Spec.Http[0].Route.Select(d => d.Weight));
        Assert.Equal(TimeSpan.FromSeconds(3), route.Spec.Http[0].Timeout);
        Assert.Equal("a", route.Metadata.Labels["team"]);
        Assert.Equal(["note"], route.Metadata.Annotations.Keys);
        Assert.DoesNotContain("last-applied", read.Resource.Yaml, StringComparison.Ordinal);

        // What the sidecar gets is parsed there by the same parser, named the same way.
        var again = ResourceParser.ParseText(read.Resource.Yaml, read.Key).ThrowIfInvalid();
        Assert.Equal(route.Key, Assert.Single(again.Resources).Key);
    }

    [Theory]
    [InlineData("""{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}],"timeout":"soon"}]}""", "spec.http[0].timeout", "is not a duration")]
    [InlineData("""{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"a"},"weight":60},{"destination":{"host":"b"},"weight":60}]}]}""", "spec.http[0].route", "add up to 120")]
    [InlineData("""{"hosts":["reviews"]}""", "spec.http", "is required")]
    public void An_invalid_object_gives_field_and_reason_named_by_its_key_and_no_resource(string spec, string field, string reason)
    {
        var read = CustomResourceReader.Read(Object($$"""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"HttpRoute","metadata":{"name":"reviews","namespace":"shop"},"spec":{{spec}}}
            """));

        Assert.Null(read.Resource);
        var error = Assert.Single(read.Errors);
        Assert.Equal("HttpRoute/shop/reviews", error.File);
        Assert.Equal(field, error.FieldPath);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void An_object_without_spec_is_refused()
    {
        var read = CustomResourceReader.Read(Object("""{"apiVersion":"meshproxy.io/v1alpha1","kind":"Service","metadata":{"name":"a","namespace":"b"}}"""));

        Assert.Null(read.Resource);
        Assert.Equal("spec", Assert.Single(read.Errors).FieldPath);
    }

    [Fact]
    public void An_istio_authorization_policy_is_read_unchanged_with_istio_semantics_under_a_name_of_its_own()
    {
        var read = CustomResourceReader.Read(Object("""
            {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",
             "metadata":{"name":"allow-web","namespace":"shop","annotations":{"istio.io/dry-run":"true"}},
             "spec":{"selector":{"matchLabels":{"app":"store"}},"action":"ALLOW",
                     "rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop/sa/web"]}}],"to":[{"operation":{"methods":["GET"],"paths":["/api/*"]}}]}]}}
            """));

        Assert.Empty(read.Errors);
        Assert.Equal("AuthorizationPolicy/shop/allow-web.istio", read.Key);
        var policy = Assert.IsType<AuthorizationPolicyResource>(read.Resource!.Resource);
        Assert.Equal(AuthorizationAction.Allow, policy.Spec.Action);
        Assert.True(policy.Spec.DryRun);
        Assert.Equal(["cluster.local/ns/shop/sa/web"], policy.Spec.Rules[0].From[0].Principals);
    }

    [Fact]
    public void Istio_peer_and_request_authentication_are_read_unchanged_under_names_of_their_own()
    {
        // As Istio's documentation writes them: namespace-wide STRICT with one port PERMISSIVE; a JWT rule with headers out.
        var peer = CustomResourceReader.Read(Object("""
            {"apiVersion":"security.istio.io/v1beta1","kind":"PeerAuthentication",
             "metadata":{"name":"default","namespace":"shop"},
             "spec":{"selector":{"matchLabels":{"app":"billing"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8081":{"mode":"PERMISSIVE"}}}}
            """));
        Assert.Empty(peer.Errors);
        Assert.Equal("PeerAuthentication/shop/default.istio", peer.Key);
        var peerSpec = Assert.IsType<PeerAuthenticationResource>(peer.Resource!.Resource).Spec;
        Assert.Equal(MtlsMode.Strict, peerSpec.Mode);
        Assert.Equal(MtlsMode.Permissive, peerSpec.PortLevel[8081]);

        var jwt = CustomResourceReader.Read(Object("""
            {"apiVersion":"security.istio.io/v1","kind":"RequestAuthentication",
             "metadata":{"name":"jwt","namespace":"shop"},
             "spec":{"selector":{"matchLabels":{"app":"billing"}},
                     "jwtRules":[{"issuer":"https://issuer.example","audiences":["billing"],"jwksUri":"https://issuer.example/jwks",
                                  "forwardOriginalToken":true,"outputClaimToHeaders":[{"header":"x-sub","claim":"sub"}]}]}}
            """));
        Assert.Empty(jwt.Errors);
        Assert.Equal("RequestAuthentication/shop/jwt.istio", jwt.Key);
        var rule = Assert.Single(Assert.IsType<RequestAuthenticationResource>(jwt.Resource!.Resource).Spec.JwtRules);
        Assert.Equal("https://issuer.example", rule.Issuer);

        // What Istio offers and MeshProxy cannot honour refuses the object, never silently drops the field.
        var cookies = CustomResourceReader.Read(Object("""
            {"apiVersion":"security.istio.io/v1","kind":"RequestAuthentication","metadata":{"name":"c","namespace":"shop"},
             "spec":{"jwtRules":[{"issuer":"https://issuer.example","jwksUri":"https://issuer.example/jwks","fromCookies":["session"]}]}}
            """));
        Assert.Null(cookies.Resource);
        Assert.Contains(cookies.Errors, e => e.FieldPath.EndsWith("fromCookies", StringComparison.Ordinal) && e.Reason.Contains("not supported", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("""{"action":"DENY","provider":{"name":"opa"},"rules":[{}]}""", "spec.provider", "only for action CUSTOM")]
    [InlineData("""{"rules":[{"from":[{"source":{"remoteIpBlocks":["10.0.0.0/8"]}}]}]}""", "spec.rules[0].from[0].source.remoteIpBlocks", "X-Forwarded-For")]
    [InlineData("""{"targetRefs":[{"kind":"Service","name":"x"}],"rules":[{}]}""", "spec.targetRefs", "not supported")]
    [InlineData("""{"rules":[{"when":[{"key":"request.auth.claims[]","values":["a"]}]}]}""", "spec.rules[0].when[0].key", "not a claim key")]
    public void An_istio_field_that_cannot_be_honoured_makes_the_policy_invalid_never_ignored(string spec, string field, string reason)
    {
        var read = CustomResourceReader.Read(Object($$"""
            {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"p","namespace":"shop"},"spec":{{spec}}}
            """));

        Assert.Null(read.Resource);
        Assert.Contains(read.Errors, e => e.FieldPath == field && e.Reason.Contains(reason, StringComparison.Ordinal));
    }

    [Fact]
    public void Another_groups_object_is_not_read()
    {
        var read = CustomResourceReader.Read(Object("""{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"a","namespace":"b"},"spec":{}}"""));

        Assert.Null(read.Resource);
        Assert.Equal("apiVersion", Assert.Single(read.Errors).FieldPath);
    }
}
