using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.Injection.Admission;

namespace MeshProxy.Injection.Tests;

/// <summary>Malformed reviews and pods that cannot be injected, fail open and fail closed.</summary>
public sealed class AdmissionErrorTests
{
    private static AdmissionReply Handle(string body, bool failClosed = false) =>
        new AdmissionReviewHandler(new SidecarInjector(InjectionGoldenTests.Options with { FailClosed = failClosed })).Handle(Encoding.UTF8.GetBytes(body));

    [Theory]
    [InlineData("{not json", "not JSON")]
    [InlineData("[1,2]", "not a JSON object")]
    [InlineData("""{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}""", "apiVersion admission.k8s.io/v1")]
    [InlineData("""{"apiVersion":"v1","kind":"Pod","metadata":{}}""", "expected kind AdmissionReview")]
    [InlineData("""{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}""", "no request.uid")]
    [InlineData("""{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}""", "no request.uid")]
    public void A_body_that_is_not_an_answerable_review_gets_400_with_the_reason(string body, string reason)
    {
        var reply = Handle(body);
        Assert.Equal(400, reply.StatusCode);
        Assert.Contains(reason, JsonNode.Parse(reply.Body)!["error"]!.GetValue<string>());
    }

    [Theory]
    [InlineData(null, "Pod", "request.object is missing")]
    [InlineData("""{"metadata":{"name":"p"}}""", "Pod", "the pod has no spec")]
    [InlineData("""{"metadata":{"name":"p"},"spec":{"containers":[]}}""", "Pod", "spec.containers is empty")]
    [InlineData("""{"metadata":{"name":"p","annotations":{"traffic.meshproxy.io/excludeOutboundPorts":"5432,http"}},"spec":{"containers":[{"name":"a"}]}}""", "Pod", "traffic.meshproxy.io/excludeOutboundPorts: 'http' is not a port")]
    [InlineData("""{"metadata":{"name":"p","annotations":{"traffic.meshproxy.io/excludeOutboundIPRanges":"10.0.0.0/33"}},"spec":{"containers":[{"name":"a"}]}}""", "Pod", "'10.0.0.0/33' is not a CIDR")]
    [InlineData("""{"metadata":{"name":"p","annotations":{"sidecar.meshproxy.io/proxyMemoryLimit":"lots"}},"spec":{"containers":[{"name":"a"}]}}""", "Pod", "'lots' is not a positive Kubernetes quantity")]
    [InlineData("""{"metadata":{"name":"p","annotations":{"sidecar.meshproxy.io/proxyMemoryLimit":"48Mi"}},"spec":{"containers":[{"name":"a"}]}}""", "Pod", "'48Mi' is too small for the sidecar")]
    [InlineData("""{"metadata":{"name":"p","annotations":{"sidecar.meshproxy.io/inject":"maybe"}},"spec":{"containers":[{"name":"a"}]}}""", "Pod", "must be true or false")]
    [InlineData("""{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":"http"}]}]}}""", "Pod", "is not a port")]
    [InlineData("""{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}],"volumes":[{"name":"meshproxy-certs"}]}}""", "Pod", "already has a volume named 'meshproxy-certs'")]
    [InlineData("""{"metadata":{"name":"d"},"spec":{}}""", "Deployment", "expected a Pod, got 'Deployment'")]
    public void A_pod_that_cannot_be_injected_is_admitted_unchanged_with_a_warning_or_refused_when_failing_closed(string? podJson, string kind, string reason)
    {
        var body = InjectionGoldenTests.ReviewJson(podJson is null ? null : JsonNode.Parse(podJson), kind: kind);
        var open = Handle(body);
        Assert.Equal(200, open.StatusCode);
        var (response, patch) = InjectionGoldenTests.ParseReply(open.Body);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
        var warning = Assert.Single(response["warnings"]!.AsArray())!.GetValue<string>();
        Assert.StartsWith("meshproxy: sidecar not injected: ", warning);
        Assert.Contains(reason, warning);

        var closed = Handle(body, failClosed: true);
        Assert.Equal(200, closed.StatusCode);
        var (denied, _) = InjectionGoldenTests.ParseReply(closed.Body);
        Assert.False(denied["allowed"]!.GetValue<bool>());
        Assert.Equal(400, denied["status"]!["code"]!.GetValue<int>());
        Assert.Contains(reason, denied["status"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public void Updates_are_admitted_without_a_patch()
    {
        var (response, patch) = InjectionGoldenTests.Review(InjectionGoldenTests.ReadPod("multi-container-pod"), InjectionGoldenTests.Options, operation: "UPDATE");
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
    }

    [Fact]
    public void A_pod_in_a_namespace_without_injection_is_injected_only_if_it_asks()
    {
        var injector = new SidecarInjector(InjectionGoldenTests.Options);
        var plain = InjectionGoldenTests.ReadPod("multi-container-pod");
        Assert.Equal(InjectionOutcome.Skipped, injector.Inject(plain, new InjectionTarget("other", NamespaceEnabled: false)).Outcome);
        var asking = InjectionGoldenTests.ReadPod("exclusions"); // labelled sidecar.meshproxy.io/inject=true
        Assert.Equal(InjectionOutcome.Injected, injector.Inject(asking, new InjectionTarget("other", NamespaceEnabled: false)).Outcome);
    }
}
