using System.Buffers;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.Listeners;

namespace MeshProxy.Fuzz;

/// <summary>
/// The inbound listener's TLS-or-plaintext decision (PeerAuthentication PERMISSIVE), over the first bytes as a socket
/// delivers them. Beyond "no exception": plaintext exactly when the first byte cannot start a TLS record; TLS only
/// for what the ClientHello parser calls complete; the answer does not depend on how the bytes are cut into segments;
/// once decided, later bytes do not change it; and the client closing decides every undecided opening.
/// </summary>
internal static class InboundDetectionTarget
{
    private static readonly byte[] Trailer = "GET / HTTP/1.1\r\n\r\n"u8.ToArray();

    public static void Run(ReadOnlySpan<byte> input)
    {
        var bytes = input.ToArray();
        var whole = new ReadOnlySequence<byte>(bytes);
        var open = InboundDetection.Classify(whole, completed: false);
        var closed = InboundDetection.Classify(whole, completed: true);
        FuzzTargets.Check(closed is not null, "a closed connection left undecided");
        FuzzTargets.Check(open is null || open == closed, $"closing changed a decided opening: {open} open, {closed} closed");

        if (bytes.Length > 0)
        {
            FuzzTargets.Check((closed == InboundOpening.Plaintext) == (bytes[0] != 0x16), $"{closed} for a first byte of 0x{bytes[0]:x2}");
        }

        if (closed == InboundOpening.Tls)
        {
            FuzzTargets.Check(ClientHelloParser.TryParse(whole, out _) == ClientHelloStatus.Complete, "TLS without a complete ClientHello");
        }

        var first = Math.Min(1, bytes.Length);
        var second = first + ((bytes.Length - first) / 2);
        var split = InboundDetection.Classify(Segments.Of(bytes[..first], bytes[first..second], bytes[second..]), completed: false);
        FuzzTargets.Check(split == open, $"segments change the answer: {open} whole, {split} in pieces");

        if (open is not null)
        {
            var longer = InboundDetection.Classify(Segments.Of(bytes, Trailer), completed: false);
            FuzzTargets.Check(longer == open, $"later bytes change the answer: {open}, then {longer}");
        }
    }
}
