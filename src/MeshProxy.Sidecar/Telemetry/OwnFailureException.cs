namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// A failure on this sidecar's side of an outbound attempt — no certificate to originate mTLS with, no
/// socket to be had — thrown before anything was sent. The endpoint is not to blame: the attempt feeds
/// neither outlier detection nor the retry budget, and is answered 503 SNR (see Resilience/README.md).
/// </summary>
internal sealed class OwnFailureException(string message, Exception? innerException = null) : Exception(message, innerException);
