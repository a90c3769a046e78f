using System.Globalization;

namespace MeshProxy.Init;

/// <summary>
/// <c>wait</c>: polls a URL until it answers 200. A classic (non-native) sidecar runs it as its
/// postStart hook, which holds the pod's next containers until the proxy is ready.
/// </summary>
internal static class ReadinessWait
{
    public static async Task<int> RunAsync(string[] args)
    {
        string? url = null;
        var timeout = TimeSpan.FromSeconds(120);
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--url" when i + 1 < args.Length:
                    url = args[++i];
                    break;
                case "--timeout-seconds" when i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds > 0:
                    timeout = TimeSpan.FromSeconds(seconds);
                    i++;
                    break;
                default:
                    await Console.Error.WriteLineAsync($"meshproxy-init wait: bad argument '{args[i]}'\n{CaptureInstaller.Usage}");
                    return 2;
            }
        }

        if (url is null || !Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            await Console.Error.WriteLineAsync("meshproxy-init wait: --url <absolute url> is required");
            return 2;
        }

        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + timeout;
        var last = "no answer";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var response = await client.GetAsync(uri);
                if ((int)response.StatusCode == 200)
                {
                    Console.WriteLine($"meshproxy-init wait: {uri} is ready");
                    return 0;
                }

                last = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                last = ex.Message;
            }

            await Task.Delay(200);
        }

        await Console.Error.WriteLineAsync($"meshproxy-init wait: {uri} not ready after {timeout.TotalSeconds:0}s ({last})");
        return 1;
    }
}
