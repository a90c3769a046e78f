using System.Security.Cryptography.X509Certificates;

namespace MeshProxy.Injection.Hosting;

/// <summary>
/// The serving certificate, read again when its files change (cert-manager and similar rotate them
/// in place), so the webhook never needs a restart for a new certificate. A half-written pair keeps
/// the last good certificate in use.
/// </summary>
internal sealed class ReloadingCertificate
{
    private readonly string _certFile;
    private readonly string _keyFile;
    private readonly Lock _lock = new();
    private X509Certificate2 _current;
    private (DateTime Cert, DateTime Key) _stamp;

    public ReloadingCertificate(string certFile, string keyFile)
    {
        _certFile = certFile;
        _keyFile = keyFile;
        _stamp = Stamp();
        _current = Load(); // at start-up a bad pair is fatal, with the reason
    }

    public X509Certificate2 Current
    {
        get
        {
            lock (_lock)
            {
                var stamp = Stamp();
                if (stamp != _stamp)
                {
                    try
                    {
                        _current = Load();
                        _stamp = stamp;
                    }
                    catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or ArgumentException)
                    {
                        // Mid-rotation: try again on the next handshake.
                    }
                }

                return _current;
            }
        }
    }

    private X509Certificate2 Load() => X509Certificate2.CreateFromPemFile(_certFile, _keyFile);

    private (DateTime, DateTime) Stamp() => (File.GetLastWriteTimeUtc(_certFile), File.GetLastWriteTimeUtc(_keyFile));
}
