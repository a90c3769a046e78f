using System.Buffers;
using Microsoft.AspNetCore.Connections;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// Whether a captured connection to a mesh service port not declared TCP speaks HTTP, from its first bytes (Istio's
/// protocol sniffing): an HTTP/1.x request line and the HTTP/2 preface both open with a known method and a space
/// ("GET ", "PRI "). Anything else (a TLS ClientHello, a database handshake, a custom method) is a byte stream; so
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

    /// <summary>
    /// The methods looked for, each with its space: RFC 9110's, PATCH, WebDAV's, and "PRI" (the HTTP/2 preface). A known
    /// list rather than any capital letters, so that a client-first protocol whose commands look like methods
    /// (SMTP's "HELO ", Redis' inline "PING ") is not taken for HTTP.
    /// </summary>
    private static readonly byte[][] Methods =
    [
        .. new[]
        {
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI",
            "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT", "MKCALENDAR",
        }.Select(m => System.Text.Encoding.ASCII.GetBytes(m + " ")),
    ];

    private const int Longest = 11; // "MKCALENDAR "

    /// <summary>True for HTTP; false for a byte stream, including a client silent for the window. Every byte stays unread.</summary>
    public static async Task<bool> IsHttpAsync(ConnectionContext connection, TimeProvider time) =>
        await FirstBytes.PeekAsync<bool>(connection, static (buffer, completed) => Classify(buffer, completed), Window, time) ?? false;

    /// <summary>True: HTTP; false: not; null: not yet known.</summary>
    internal static bool? Classify(ReadOnlySequence<byte> buffer, bool completed)
    {
        var length = (int)Math.Min(buffer.Length, Longest);
        Span<byte> head = stackalloc byte[Longest];
        buffer.Slice(0, length).CopyTo(head);
        var seen = head[..length];
        var couldBe = false;
        foreach (var method in Methods)
        {
            if (seen.StartsWith(method))
            {
                return true;
            }

            couldBe |= method.AsSpan().StartsWith(seen);
        }

        return couldBe && !completed ? null : false;
    }
}
