using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Spa.Edge;

/// <summary>
/// Certificates for TLS on the HTTP endpoint and the Orleans gateway: the server's certificate with its key (PEM
/// certificate and key files, or one PKCS#12 file), and the certificates a peer is trusted by (a PEM bundle of CA or
/// self-signed certificates). Every failure is an <see cref="ArgumentException"/> that names the file and the option.
/// </summary>
public static class TransportCertificates
{
    /// <summary>
    /// The certificate at <paramref name="certificatePath"/> with its private key: from <paramref name="keyPath"/>
    /// (PEM), from the PEM file itself when it also holds the key, or from a .pfx/.p12 file opened with <paramref name="password"/>.
    /// </summary>
    public static X509Certificate2 LoadServer(string certificatePath, string? keyPath, string? password, string option, string keyOption)
    {
        RequireFile(certificatePath, option);
        if (keyPath is not null) RequireFile(keyPath, keyOption);
        if (!IsPkcs12(certificatePath) && keyPath is null && !File.ReadAllText(certificatePath).Contains("PRIVATE KEY-----", StringComparison.Ordinal))
            throw NoPrivateKey(certificatePath, option, keyOption);
        X509Certificate2 certificate;
        try
        {
            certificate = IsPkcs12(certificatePath)
                ? X509CertificateLoader.LoadPkcs12FromFile(certificatePath, password)
                : X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            var key = keyPath is null ? "" : $" with the key {keyPath}";
            throw new ArgumentException($"{option}: cannot read the certificate {certificatePath}{key} ({e.Message.TrimEnd('.')})");
        }
        if (!certificate.HasPrivateKey) throw NoPrivateKey(certificatePath, option, keyOption);
        if (DateTime.Now > certificate.NotAfter || DateTime.Now < certificate.NotBefore)
            throw new ArgumentException($"{option}: the certificate {certificatePath} is valid from {certificate.NotBefore:u} to {certificate.NotAfter:u}, not now");
        return certificate;
    }

    /// <summary>The certificates of a PEM bundle (or a DER file): the roots a peer's certificate must chain to.</summary>
    public static X509Certificate2Collection LoadTrust(string path, string option)
    {
        RequireFile(path, option);
        var trusted = new X509Certificate2Collection();
        try
        {
            if (File.ReadAllText(path).Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal)) trusted.ImportFromPemFile(path);
            else trusted.Add(X509CertificateLoader.LoadCertificateFromFile(path));
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException($"{option}: cannot read the certificates in {path} ({e.Message.TrimEnd('.')})");
        }
        return trusted.Count > 0 ? trusted : throw new ArgumentException($"{option}: {path} holds no certificate");
    }

    /// <summary>
    /// Whether <paramref name="certificate"/> chains to one of <paramref name="trusted"/> (and to nothing else: the
    /// system's roots are not consulted), with the intermediates the peer presented in <paramref name="presented"/>.
    /// </summary>
    public static bool ChainsTo(X509Certificate2 certificate, X509Chain? presented, X509Certificate2Collection trusted)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
            foreach (var element in presented.ChainElements) chain.ChainPolicy.ExtraStore.Add(element.Certificate);
        return chain.Build(certificate);
    }

    /// <summary>
    /// TLS to the gateway for an Orleans client: the gateway's certificate must chain to <paramref name="trusted"/>. The
    /// name is not checked, since the gateways a client learns from the cluster are addresses, not the names in a certificate.
    /// </summary>
    public static IClientBuilder UseTlsTrusting(this IClientBuilder client, X509Certificate2Collection trusted) =>
        client.UseTls(tls => tls.RemoteCertificateValidation = (remote, chain, _) => ChainsTo(remote, chain, trusted));

    private static ArgumentException NoPrivateKey(string certificatePath, string option, string keyOption) =>
        new($"{option}: the certificate {certificatePath} has no private key: give its key file ({keyOption}), or a PKCS#12 file that holds it");

    private static bool IsPkcs12(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".pfx" or ".p12";

    private static void RequireFile(string path, string option)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{option}: the file {path} does not exist");
    }
}
