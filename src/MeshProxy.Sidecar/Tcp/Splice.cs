using System.Buffers;
using System.Net.Sockets;
using MeshProxy.Metrics.Istio;
using Microsoft.AspNetCore.Connections;

namespace MeshProxy.Sidecar.Tcp;

/// <summary>
/// Copies bytes both ways between a downstream (the side that opened the stream) and an upstream until both
/// directions have ended. Each direction's end is passed on as a half-close; a failure in either direction (a reset,
/// the idle timeout, the listener closing the connection at the end of a drain) ends both. Bytes are counted as they
/// pass: received from the downstream, sent to it (Istio's istio_tcp_received_bytes_total / istio_tcp_sent_bytes_total).
/// </summary>
internal static class Splice
{
    private const int BufferSize = 16 * 1024;

    /// <summary>How the splice ended.</summary>
    public enum Outcome
    {
        /// <summary>Both sides finished sending.</summary>
        Completed,

        /// <summary>No byte moved either way for the idle timeout.</summary>
        IdleTimeout,

        /// <summary>A reset or an error on either side, or the listener closed the connection (drain, stop).</summary>
        Aborted,
    }

    /// <param name="idleTimeout">Envoy's TCP idle timeout: the stream is closed when no byte moved either way for this long (measured on <paramref name="time"/>).</param>
    /// <param name="closed">Fires when the downstream connection must end now: it went away, or its listener is stopping.</param>
    public static async Task<Outcome> RunAsync(
        StreamEnd downstream, StreamEnd upstream, TcpStreamMeter meter, TimeSpan idleTimeout, TimeProvider time, CancellationToken closed)
    {
        using var idle = new CancellationTokenSource(idleTimeout, time);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(closed, idle.Token);
        var activity = new IdleTimer(idle, idleTimeout);
        var toUpstream = CopyAsync(downstream.Read, upstream, activity, meter, received: true, stop);
        var toDownstream = CopyAsync(upstream.Read, downstream, activity, meter, received: false, stop);
        var completed = await toUpstream & await toDownstream;
        return completed ? Outcome.Completed : idle.IsCancellationRequested ? Outcome.IdleTimeout : Outcome.Aborted;
    }

    /// <returns>True when the source ended cleanly and the end was passed on; false when the stream was cut.</returns>
    private static async Task<bool> CopyAsync(Stream from, StreamEnd to, IdleTimer activity, TcpStreamMeter meter, bool received, CancellationTokenSource stop)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            while (true)
            {
                var n = await from.ReadAsync(buffer, stop.Token);
                if (n == 0)
                {
                    break;
                }

                activity.Touch();
                await to.Write.WriteAsync(buffer.AsMemory(0, n), stop.Token);
                await to.Write.FlushAsync(stop.Token);
                if (received)
                {
                    meter.AddReceived(n);
                }
                else
                {
                    meter.AddSent(n);
                }
            }

            await to.CloseWriteAsync();
            return true;
        }
        catch (Exception ex) when (IsStreamFailure(ex))
        {
            // One direction cut: the other cannot go on meaningfully (and may be waiting on a peer that is gone).
            await stop.CancelAsync();
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public static bool IsStreamFailure(Exception ex) =>
        ex is OperationCanceledException or IOException or SocketException or ObjectDisposedException or InvalidOperationException
            or ConnectionResetException or ConnectionAbortedException or System.Security.Authentication.AuthenticationException;

    /// <summary>Re-arms the idle timer whenever a chunk moves, whichever way.</summary>
    private sealed class IdleTimer(CancellationTokenSource idle, TimeSpan timeout)
    {
        public void Touch()
        {
            try
            {
                idle.CancelAfter(timeout);
            }
            catch (ObjectDisposedException)
            {
                // The splice is over.
            }
        }
    }
}
