namespace MeshProxy.Testing;

/// <summary>
/// A real nginx (tests/setup.sh installs it) serving static files and an echo location on a loopback port.
/// nginx rejects port 0, so the port is a <see cref="PortReservation"/> held until nginx serves on it
/// (nginx binds it with <c>reuseport</c>, which the reservation allows and other processes cannot use).
/// </summary>
public sealed class NginxServer : IAsyncDisposable
{
    private readonly ExternalProcess _process;
    private readonly string _dir;

    private NginxServer(ExternalProcess process, string dir, int port)
    {
        _process = process;
        _dir = dir;
        Port = port;
    }

    public int Port { get; }

    public static async Task<NginxServer> StartAsync()
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", "nginx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        await File.WriteAllTextAsync(Path.Combine(dir, "1k.txt"), new string('x', 1024));
        using var reservation = new PortReservation();
        var port = reservation.Port;
        await File.WriteAllTextAsync(Path.Combine(dir, "nginx.conf"), $$"""
            daemon off;
            worker_processes 1;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log;
            events { worker_connections 256; }
            http {
              access_log off;
              client_body_temp_path {{dir}};
              proxy_temp_path {{dir}};
              fastcgi_temp_path {{dir}};
              uwsgi_temp_path {{dir}};
              scgi_temp_path {{dir}};
              server {
                listen 127.0.0.1:{{port}} reuseport;
                location / { root {{dir}}; }
                location /headers { return 200 "rid=$http_x_request_id xff=$http_x_forwarded_for host=$host\n"; }
              }
            }
            """);
        var process = ExternalProcess.Start("nginx", ["-c", Path.Combine(dir, "nginx.conf"), "-e", Path.Combine(dir, "error.log")]);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!await IsUpAsync(port))
        {
            if (DateTime.UtcNow > deadline || process.HasExited)
            {
                throw new InvalidOperationException($"nginx did not start: {process.Output}");
            }

            await Task.Delay(50);
        }

        return new NginxServer(process, dir, port);
    }

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private static async Task<bool> IsUpAsync(int port)
    {
        try
        {
            using var client = new System.Net.Sockets.TcpClient();
            await client.ConnectAsync("127.0.0.1", port);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }
}
