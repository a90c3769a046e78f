using System.Buffers;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>Looking at a new connection's first bytes without consuming them, for the detections that pick its handler.</summary>
internal static class FirstBytes
{
    /// <summary>
    /// Reads until <paramref name="classify"/> decides (given the bytes so far and whether the client has finished
    /// sending), leaving every byte unread for the chosen handler; null when the client sent nothing decisive within
    /// <see cref="KestrelLimits.FirstBytesTimeout"/> (or the shorter <paramref name="window"/>, on <paramref name="time"/>) or the connection failed.
    /// </summary>
    public static async Task<T?> PeekAsync<T>(ConnectionContext connection, Func<ReadOnlySequence<byte>, bool, T?> classify, TimeSpan? window = null, TimeProvider? time = null)
        where T : struct
    {
        var input = connection.Transport.Input;
        using var windowTimer = window is { } w ? new CancellationTokenSource(w, time ?? TimeProvider.System) : null;
        using var timeout = windowTimer is null
            ? CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed)
            : CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed, windowTimer.Token);
        timeout.CancelAfter(KestrelLimits.FirstBytesTimeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(timeout.Token);
                var decision = classify(result.Buffer, result.IsCompleted);
                if (decision is null && !result.IsCompleted)
                {
                    // Undecided so far: wait for more bytes.
                    input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                    continue;
                }

                // Consume and examine nothing: the chosen handler's first read returns these bytes at once.
                input.AdvanceTo(result.Buffer.Start);
                return decision;
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ConnectionResetException or SocketException or IOException or InvalidOperationException)
        {
            return null;
        }
    }
}
