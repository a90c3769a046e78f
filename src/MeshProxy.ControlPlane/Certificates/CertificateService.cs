using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Resources;
using Grpc.Core;
using RpcStatus = Grpc.Core.Status;
using MeshProxy.Identity;
using MeshProxy.Identity.Bootstrap;
using MeshProxy.Metrics;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// meshproxy.v1.Certificates/CreateCertificate: authenticates the caller by its bearer token (a local bootstrap
/// token, or in Kubernetes mode the pod's service-account token through TokenReview), then has the CA sign its CSR
/// for exactly the SPIFFE ID that token entitles. Every refusal is a gRPC status with a
/// message that says what to fix, a log line and a count by reason. Bound with MapGrpcService by ControlPlaneHost.
/// </summary>
internal sealed class CertificateService : Api.V1.Certificates.CertificatesBase, IDisposable
{
    private const string BearerPrefix = "Bearer ";

    private readonly MeshCertificateAuthority _authority;
    private readonly IWorkloadAuthenticator _authenticator;
    private readonly PodBinding? _pods;
    private readonly CertificateMetrics _metrics;
    private readonly ILogger<CertificateService> _logger;

    public CertificateService(MeshCertificateAuthority authority, IWorkloadAuthenticator authenticator, CertificateMetrics metrics, ILogger<CertificateService> logger, PodBinding? pods = null)
    {
        _authority = authority;
        _authenticator = authenticator;
        _pods = pods;
        _metrics = metrics;
        _logger = logger;
    }

    public MeshCertificateAuthority Authority => _authority;

    /// <summary>
    /// Loads the CA and the workloads' authenticator (the token store, or TokenReview on <paramref name="kubernetes"/>
    /// when <see cref="CertificateServiceOptions.TokenReview"/> is set), follows MeshConfig changes of
    /// <paramref name="directory"/>, and registers the CA's figures in <paramref name="registry"/>. With TokenReview, <paramref name="pods"/> binds a
    /// pod's token to that pod (the host's one <see cref="PodBinding"/>, which the config stream shares).
    /// </summary>
    /// <exception cref="CertificateAuthorityException">The CA cannot be loaded, or the options do not hold together.</exception>
    public static async Task<CertificateService> CreateAsync(
        CertificateServiceOptions options, IConfigSource directory, MetricsRegistry registry, ILoggerFactory loggers, TimeProvider? time = null, k8s.IKubernetes? kubernetes = null,
        PodBinding? pods = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Validate() is { } problem)
        {
            throw new CertificateAuthorityException(problem);
        }

        time ??= TimeProvider.System;
        IWorkloadAuthenticator tokens;
        PodBinding? binding = null;
        if (options.TokenReview is { } review)
        {
            tokens = new TokenReviewAuthenticator(kubernetes ?? throw new CertificateAuthorityException("service-account tokens are reviewed by the Kubernetes API: run with --source kubernetes"), review, time);
            binding = pods;
        }
        else
        {
            try
            {
                tokens = TokenStoreAuthenticator.Open(options.TokenStoreFile, loggers);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                throw new CertificateAuthorityException(ex.Message, ex);
            }
        }

        MeshCertificateAuthority authority;
        if (options.KubernetesCa is { } kubeCa)
        {
            var client = kubernetes ?? throw new CertificateAuthorityException("--ca-secret needs --source kubernetes");
            var shared = await KubernetesCa.StartAsync(client, kubeCa, () => MeshCertificateAuthority.MeshOf(directory.Current), options.ClockSkewAllowance, time, loggers, cancellationToken);
            try
            {
                authority = MeshCertificateAuthority.FromKubernetes(shared, options, MeshCertificateAuthority.MeshOf(directory.Current), time, loggers);
            }
            catch
            {
                shared.Dispose();
                throw;
            }
        }
        else
        {
            authority = MeshCertificateAuthority.Load(options, MeshCertificateAuthority.MeshOf(directory.Current), time, loggers);
        }

        directory.Changed += authority.OnConfigChanged;
        var metrics = new CertificateMetrics(registry, authority);
        return new CertificateService(authority, tokens, metrics, loggers.CreateLogger<CertificateService>(), binding);
    }

    public override async Task<CreateCertificateResponse> CreateCertificate(CreateCertificateRequest request, ServerCallContext context)
    {
        var peer = context.GetHttpContext().Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var token = BearerToken(context.RequestHeaders.GetValue("authorization"));
        if (token is null)
        {
            throw Refuse(StatusCode.Unauthenticated, CertificateMetrics.MissingToken, peer, "unauthenticated",
                "no bearer token: send the workload's token (its bootstrap token, or on Kubernetes its pod's projected service-account token) as 'authorization: Bearer <token>'");
        }

        // Before authenticating: a replica that may be behind a root rotation signs nothing, so it need not review tokens.
        if (_authority.Unavailable is { } unavailable)
        {
            throw Refuse(StatusCode.Unavailable, CertificateMetrics.CaUnavailable, peer, "unauthenticated", unavailable);
        }

        WorkloadIdentity? workload;
        try
        {
            workload = await _authenticator.AuthenticateAsync(token, context.CancellationToken);
            if (workload is not null)
            {
                _pods?.Check(workload, context.GetHttpContext().Connection.RemoteIpAddress);
            }
        }
        catch (WorkloadAuthenticationException ex)
        {
            throw Refuse(ex.Status, ex.Reason, peer, ex.Claimed, ex.Message);
        }

        if (workload is null)
        {
            throw Refuse(StatusCode.Unauthenticated, CertificateMetrics.InvalidToken, peer, "unauthenticated",
                "the bearer token is not valid: it matches no workload (create one with 'meshproxy token create')");
        }

        if (string.IsNullOrWhiteSpace(request.CsrPem))
        {
            throw Refuse(StatusCode.InvalidArgument, CertificateMetrics.InvalidRequest, peer, workload, "csr_pem is empty: send a PEM PKCS#10 certificate signing request");
        }

        if (request.ValiditySeconds < 0)
        {
            throw Refuse(StatusCode.InvalidArgument, CertificateMetrics.InvalidRequest, peer, workload, $"validity_seconds is {request.ValiditySeconds}; it must be positive, or 0 for the mesh default");
        }

        var ca = _authority.Current;
        SpiffeId entitled;
        try
        {
            entitled = workload.ToSpiffeId(ca.Mesh.TrustDomain);
        }
        catch (FormatException ex)
        {
            throw Refuse(StatusCode.PermissionDenied, CertificateMetrics.ReasonOf(SigningRefusal.IdentityMismatch), peer, workload, ex.Message);
        }

        // TimeSpan.FromSeconds overflows past ~29 000 years; anything that long is clamped anyway.
        TimeSpan? ttl = request.ValiditySeconds == 0 ? null : TimeSpan.FromSeconds(Math.Min(request.ValiditySeconds, (long)TimeSpan.FromDays(36500).TotalSeconds));
        IssuedCertificate issued;
        try
        {
            issued = ca.Authority.Sign(request.CsrPem, entitled, ttl);
        }
        catch (SigningRefusedException ex)
        {
            // The CA has logged the refusal with its reason already; count it and answer.
            _metrics.Refused(CertificateMetrics.ReasonOf(ex.Reason));
            throw new RpcException(new RpcStatus(StatusOf(ex.Reason), $"{CertificateMetrics.ReasonOf(ex.Reason)}: {ex.Message}"));
        }

        _metrics.Issued.Inc();
        var response = new CreateCertificateResponse();
        response.CertChainPem.AddRange(SplitPem(issued.CertificateChainPem));
        // The published bundle, not only the CA's own root: during a rotation it holds both roots.
        response.TrustBundlePem.AddRange(ca.BundlePem);
        return response;
    }

    public void Dispose() => _authority.Dispose();

    private RpcException Refuse(StatusCode status, string reason, string peer, WorkloadIdentity? workload, string message) =>
        Refuse(status, reason, peer, workload?.ToString() ?? "unauthenticated", message);

    private RpcException Refuse(StatusCode status, string reason, string peer, string workload, string message)
    {
        _metrics.Refused(reason);
        _logger.CertificateRefused(reason, workload, peer, message);
        return new RpcException(new RpcStatus(status, message));
    }

    /// <summary>The token of an <c>authorization: Bearer</c> header (the config stream reads it the same way); null when there is none.</summary>
    internal static string? BearerToken(string? authorization)
    {
        // The scheme is case-insensitive (RFC 9110 11.1); the token itself is not.
        if (authorization is null || !authorization.StartsWith(BearerPrefix, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var token = authorization[BearerPrefix.Length..].Trim();
        return token.Length == 0 ? null : token;
    }

    /// <summary>
    /// Asking for an identity beyond the one entitled is a permission problem; a request that cannot be
    /// signed as sent is an argument problem; a CA outside its own validity is the control plane's problem.
    /// </summary>
    private static StatusCode StatusOf(SigningRefusal reason) => reason switch
    {
        SigningRefusal.IdentityMismatch or SigningRefusal.MultipleUriSans or SigningRefusal.OtherSubjectAltNames or SigningRefusal.ForeignTrustDomain => StatusCode.PermissionDenied,
        SigningRefusal.CaNotValid => StatusCode.Unavailable,
        _ => StatusCode.InvalidArgument,
    };

    internal static List<string> SplitPem(string pem)
    {
        var blocks = new List<string>();
        var rest = pem.AsSpan();
        while (System.Security.Cryptography.PemEncoding.TryFind(rest, out var fields))
        {
            blocks.Add(rest[fields.Location].ToString() + "\n");
            rest = rest[fields.Location.End..];
        }

        return blocks;
    }
}
