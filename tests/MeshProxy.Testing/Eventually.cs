using System.Diagnostics;

namespace MeshProxy.Testing;

/// <summary>Polling for a condition that another thread or process makes true, with a generous bound.</summary>
public static class Eventually
{
    /// <summary>Returns once <paramref name="condition"/> holds; throws a TimeoutException naming <paramref name="what"/> after <paramref name="timeoutMs"/>.</summary>
    public static async Task TrueAsync(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            if (watch.ElapsedMilliseconds > timeoutMs)
            {
                throw new TimeoutException($"timed out waiting for: {what}");
            }

            await Task.Delay(20);
        }
    }
}
