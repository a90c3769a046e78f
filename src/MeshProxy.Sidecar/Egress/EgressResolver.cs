using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Sidecar.Egress;

/// <summary>
/// The sidecar's own view of what an allowed name is: the addresses the system resolver gives for it
/// (hosts file included), cached for a short fixed time. .NET's resolver does not expose record TTLs,
/// so a fixed lifetime stands in for them; it also bounds how long a changed record goes unseen.
/// Failures are not cached, and concurrent lookups of one name share a single query.
/// </summary>
internal sealed class EgressResolver(TimeProvider time)
{
    public static readonly TimeSpan CacheLifetime = TimeSpan.FromSeconds(30);

    /// <summary>Bounds the cache so that an app looping over random names cannot grow it without end.</summary>
    private const int MaxEntries = 4096;

    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The name's addresses; an IP literal is its own only address. Throws <see cref="SocketException"/> if it does not resolve.</summary>
    public async Task<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken)
    {
        if (IPAddress.TryParse(host, out var literal))
        {
            return [literal];
        }

        var now = time.GetTimestamp();
        if (_cache.TryGetValue(host, out var cached) && time.GetElapsedTime(cached.Created, now) < CacheLifetime)
        {
            return await cached.Addresses.WaitAsync(cancellationToken);
        }

        if (_cache.Count >= MaxEntries)
        {
            _cache.Clear();
        }

        var entry = new Entry(now, Dns.GetHostAddressesAsync(host, CancellationToken.None));
        _cache[host] = entry;
        try
        {
            var addresses = await entry.Addresses.WaitAsync(cancellationToken);
            if (addresses.Length == 0)
            {
                throw new SocketException((int)SocketError.HostNotFound);
            }

            return addresses;
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            _cache.TryRemove(new KeyValuePair<string, Entry>(host, entry));
            throw;
        }
    }

    /// <summary>True when <paramref name="address"/> is one of the name's addresses (IPv4-mapped IPv6 compared as IPv4).</summary>
    public static bool Contains(IPAddress[] addresses, IPAddress address)
    {
        var wanted = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        foreach (var a in addresses)
        {
            if ((a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a).Equals(wanted))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Connects to the first of the addresses that answers; throws the last failure if none does.</summary>
    public static async Task<Socket> ConnectAsync(IPAddress[] addresses, int port, CancellationToken cancellationToken)
    {
        Exception? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, port), cancellationToken);
                return socket;
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                last = ex;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        throw last ?? new SocketException((int)SocketError.HostNotFound);
    }

    private sealed record Entry(long Created, Task<IPAddress[]> Addresses);
}
