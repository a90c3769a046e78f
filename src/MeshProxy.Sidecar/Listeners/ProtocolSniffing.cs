using System.Buffers;
using Microsoft.AspNetCore.Connections;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// Whether a captured connection to a mesh service port not declared TCP speaks HTTP, from its first bytes (Istio's
/// protocol sniffing): an HTTP/1.x request line and the HTTP/2 preface both open with a method token of capital
/// letters and a space ("GET ", "PRI "). Anything else (a TLS ClientHello, a database handshake) is a byte stream; so
/// is a client that sends nothing within <see cref="Window"/>, which is how a server-speaks-first protocol looks from
/// here (its client waits for a banner). A port declared TCP is never sniffed and never waits.
/// </summary>
internal static class ProtocolSniffing
{
    /// <summary>
    /// How long a client of a port not declared TCP gets to send its first byte before the connection is taken for a
    /// byte stream. Short, because a server-speaks-first client waits this long for its banner; long enough that an
    /// HTTP client on a loaded node is not mistaken (its request is written as soon as it connects).
    /// </summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(1);

    /// <summary>The longest method token looked for (RFC 9110 methods in use are at most 7 letters; extensions a few more).</summary>
    private const int MaxMethod = 20;

    /// <summary>True for HTTP; false for a byte stream, including a client silent for the window. Every byte stays unread.</summary>
    public static async Task<bool> IsHttpAsync(ConnectionContext connection, TimeProvider time) =>
        await FirstBytes.PeekAsync<bool>(connection, static (buffer, completed) => Classify(buffer, completed), Window, time) ?? false;

    /// <summary>True: HTTP; false: not; null: not yet known.</summary>
    internal static bool? Classify(ReadOnlySequence<byte> buffer, bool completed)
    {
        var length = (int)Math.Min(buffer.Length, MaxMethod + 1);
        Span<byte> head = stackalloc byte[MaxMethod + 1];
        buffer.Slice(0, length).CopyTo(head);
        for (var i = 0; i < length; i++)
        {
            var b = head[i];
            if (b == (byte)' ')
            {
                return i > 0;
            }

            if (b is < (byte)'A' or > (byte)'Z')
            {
                return false;
            }
        }

        return length > MaxMethod || completed ? false : null;
    }
}
