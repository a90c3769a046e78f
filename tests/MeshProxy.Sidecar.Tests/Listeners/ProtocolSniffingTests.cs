using System.Buffers;
using System.Text;
using MeshProxy.Sidecar.Listeners;

namespace MeshProxy.Sidecar.Tests.Listeners;

/// <summary>HTTP or a byte stream, from the first bytes of a captured connection to a port not declared TCP.</summary>
public sealed class ProtocolSniffingTests
{
    [Theory]
    [InlineData("GET / HTTP/1.1\r\n", false, true)]
    [InlineData("POST /x HTTP/1.1\r\n", false, true)]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, true)] // the HTTP/2 preface
    [InlineData("OPTIONS", false, null)]                       // a method so far: wait for the space
    [InlineData("OPTIONS", true, false)]                       // ... unless the client has finished sending
    [InlineData("", false, null)]
    [InlineData("", true, false)]
    [InlineData("get / HTTP/1.1\r\n", false, false)]            // lowercase: not a method Kestrel would take either
    [InlineData("\u0016\u0003\u0001", false, false)]            // a TLS ClientHello
    [InlineData(" GET /", false, false)]                       // an empty method
    [InlineData("HELO store\r\n", false, false)]               // capital letters and a space, but no HTTP method
    [InlineData("PING\r\n", false, false)]
    [InlineData("PROPFIND /dav HTTP/1.1\r\n", false, true)]
    [InlineData("GETX / HTTP/1.1\r\n", false, false)]
    public void First_bytes_decide(string opening, bool completed, bool? http)
    {
        var bytes = new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(opening));
        Assert.Equal(http, ProtocolSniffing.Classify(bytes, completed));
    }
}
