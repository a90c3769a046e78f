using System.Net.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The upstream's response was refused by a strict parser (Forwarding/Http11: ambiguous framing such as two
/// Content-Length fields, Content-Length with Transfer-Encoding, a bare LF, obs-fold); the request fails with
/// flag UPE and 502, and the connection is closed. Declared with the failure classification (<see cref="UpstreamFailure"/>) that reads it.
/// </summary>
internal sealed class UpstreamProtocolException(string violation)
    : HttpRequestException(HttpRequestError.InvalidResponse, $"response refused: {violation}")
{
    public string Violation { get; } = violation;
}
