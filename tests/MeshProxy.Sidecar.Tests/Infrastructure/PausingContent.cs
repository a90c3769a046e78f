using System.Net;
using System.Security.Cryptography;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>Deterministic bytes with a pause: streams out <c>pauseAfter</c> bytes, waits for a signal, then the rest.</summary>
internal sealed class PausingContent(long total, long pauseAfter, Task resume) : HttpContent
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public byte[] Hash => _hash.GetCurrentHash();

    public static async Task WriteAsync(Stream stream, long total, long pauseAfter, Task resume, IncrementalHash? hash = null)
    {
        var chunk = new byte[64 * 1024];
        var random = new Random(42);
        for (long sent = 0; sent < total;)
        {
            if (sent == pauseAfter)
            {
                await stream.FlushAsync();
                await resume.WaitAsync(TimeSpan.FromSeconds(15)); // a proxy holding the body whole never lets this go
            }

            random.NextBytes(chunk);
            var size = (int)Math.Min(chunk.Length, Math.Min(total - sent, sent < pauseAfter ? pauseAfter - sent : long.MaxValue));
            hash?.AppendData(chunk, 0, size);
            await stream.WriteAsync(chunk.AsMemory(0, size));
            sent += size;
        }
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        WriteAsync(stream, total, pauseAfter, resume, _hash);

    protected override bool TryComputeLength(out long length)
    {
        length = total;
        return true;
    }
}
