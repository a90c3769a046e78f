using System.Collections.Immutable;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using MeshProxy.Identity.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Identity.Bootstrap;

/// <summary>
/// Per-workload bootstrap tokens for running without Kubernetes. A token is 256 random bits, shown once at
/// creation; the file (JSON, mode 0600) keeps only its SHA-256, so a leaked file does not leak tokens. A
/// single unsalted hash is enough here because the tokens are random, not chosen by people.
/// </summary>
public sealed class LocalTokenStore : IWorkloadAuthenticator
{
    private const int TokenBytes = 32;

    private readonly string _path;
    private readonly ILogger _logger;
    private readonly Lock _writeLock = new();
    private ImmutableArray<Entry> _entries;

    private LocalTokenStore(string path, ImmutableArray<Entry> entries, ILogger logger)
    {
        _path = path;
        _entries = entries;
        _logger = logger;
    }

    /// <summary>Opens the store at <paramref name="path"/>, or starts an empty one there (the file is written on the first token).</summary>
    /// <exception cref="InvalidDataException">The file is readable by others, or is not a token store.</exception>
    public static LocalTokenStore Open(string path, ILogger<LocalTokenStore>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ILogger log = logger ?? (ILogger)NullLogger.Instance;
        if (!File.Exists(path))
        {
            return new LocalTokenStore(path, [], log);
        }

        if (FilePermissions.CheckOwnerOnly(path) is { } problem)
        {
            throw new InvalidDataException($"Refusing to load the token store: {problem}");
        }

        StoreFile? file;
        try
        {
            file = JsonSerializer.Deserialize(File.ReadAllText(path), TokenStoreJson.Default.StoreFile);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path}: not a token store ({ex.Message})", ex);
        }

        var entries = ImmutableArray.CreateBuilder<Entry>();
        foreach (var record in file?.Tokens ?? [])
        {
            if (!IsValidName(record.Namespace) || !IsValidName(record.ServiceAccount) || !TryDecodeHash(record.Sha256, out var hash))
            {
                throw new InvalidDataException($"{path}: entry '{record.Namespace}/{record.ServiceAccount}' is invalid");
            }

            entries.Add(new Entry(new WorkloadIdentity(record.Namespace, record.ServiceAccount), hash, record.Created));
        }

        return new LocalTokenStore(path, entries.ToImmutable(), log);
    }

    public IReadOnlyList<WorkloadIdentity> Workloads => _entries.Select(e => e.Workload).ToList();

    /// <summary>
    /// Creates a new token for (namespace, service account), replacing any earlier one, and saves the store.
    /// The returned token is not kept anywhere; hand it to the workload now.
    /// </summary>
    public string CreateToken(string ns, string serviceAccount)
    {
        if (!IsValidName(ns) || !IsValidName(serviceAccount))
        {
            throw new ArgumentException($"'{ns}/{serviceAccount}' is not a valid namespace/service-account pair (letters, digits, '.', '-', '_')");
        }

        var token = Base64Url(RandomNumberGenerator.GetBytes(TokenBytes));
        var workload = new WorkloadIdentity(ns, serviceAccount);
        lock (_writeLock)
        {
            var next = _entries.RemoveAll(e => e.Workload == workload).Add(new Entry(workload, Hash(token), DateTimeOffset.UtcNow));
            Save(next);
            _entries = next;
        }

        Log.TokenCreated(_logger, ns, serviceAccount);
        return token;
    }

    /// <summary>Forgets the token of (namespace, service account); returns false if there was none.</summary>
    public bool Revoke(string ns, string serviceAccount)
    {
        var workload = new WorkloadIdentity(ns, serviceAccount);
        lock (_writeLock)
        {
            var next = _entries.RemoveAll(e => e.Workload == workload);
            if (next.Length == _entries.Length)
            {
                return false;
            }

            Save(next);
            _entries = next;
            return true;
        }
    }

    public ValueTask<WorkloadIdentity?> AuthenticateAsync(string bearerToken, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(bearerToken) || bearerToken.Length > 256)
        {
            Log.TokenRefused(_logger);
            return ValueTask.FromResult<WorkloadIdentity?>(null);
        }

        Span<byte> presented = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(bearerToken), presented);

        // Compare against every entry, each in constant time, so timing reveals neither which entry matched nor how much of it.
        WorkloadIdentity? found = null;
        foreach (var entry in _entries)
        {
            if (CryptographicOperations.FixedTimeEquals(presented, entry.Hash))
            {
                found = entry.Workload;
            }
        }

        if (found is null)
        {
            Log.TokenRefused(_logger);
        }

        return ValueTask.FromResult(found);
    }

    private void Save(ImmutableArray<Entry> entries)
    {
        var file = new StoreFile(1, entries.Select(e => new TokenRecord(e.Workload.Namespace, e.Workload.ServiceAccount, Convert.ToBase64String(e.Hash), e.Created)).ToList());
        var directory = Path.GetDirectoryName(Path.GetFullPath(_path));
        if (directory is not null)
        {
            Directory.CreateDirectory(directory);
        }

        FilePermissions.WriteSecretAtomically(_path, JsonSerializer.Serialize(file, TokenStoreJson.Default.StoreFile));
    }

    private static byte[] Hash(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));

    private static bool IsValidName(string? name) => name is not null && SpiffeId.IsValidPathSegment(name, out _);

    private static bool TryDecodeHash(string? base64, out byte[] hash)
    {
        hash = [];
        if (base64 is null)
        {
            return false;
        }

        try
        {
            hash = Convert.FromBase64String(base64);
            return hash.Length == SHA256.HashSizeInBytes;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private sealed record Entry(WorkloadIdentity Workload, byte[] Hash, DateTimeOffset Created);

    internal sealed record StoreFile(int Version, List<TokenRecord> Tokens);

    internal sealed record TokenRecord(string Namespace, string ServiceAccount, string Sha256, DateTimeOffset Created);
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(LocalTokenStore.StoreFile))]
internal sealed partial class TokenStoreJson : JsonSerializerContext;
