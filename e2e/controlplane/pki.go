package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type pkiFiles struct {
	caCert, serverCert, serverKey, saPublic, saPrivate string
	caPEM                                              []byte
}

// writePKI makes a fresh CA, a serving certificate for 127.0.0.1 and the
// in-cluster names, and the ServiceAccount token signing key pair. Each run
// gets its own: nothing is shared between control planes.
func writePKI(dir string) (pkiFiles, error) {
	f := pkiFiles{
		caCert:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey:  filepath.Join(dir, "apiserver.key"),
		saPublic:   filepath.Join(dir, "sa.pub"),
		saPrivate:  filepath.Join(dir, "sa.key"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kiln-controlplane-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	f.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(f.caCert, f.caPEM, 0o644); err != nil {
		return f, err
	}

	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	serverTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
		},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}
	serverDER, err := x509.CreateCertificate(rand.Reader, serverTemplate, ca, &serverKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.serverCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverDER}), 0o644); err != nil {
		return f, err
	}
	if err := writeKey(f.serverKey, serverKey); err != nil {
		return f, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	if err := writeKey(f.saPrivate, saKey); err != nil {
		return f, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.saPublic, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return f, err
	}
	return f, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

type credential struct {
	user  user
	token string
}

// writeTokens gives "admin" (system:masters) and every --user a random bearer
// token in the apiserver's static token file. The first credential is admin.
func writeTokens(dir string, users []user) ([]credential, error) {
	all := append([]user{{name: "admin", groups: []string{"system:masters"}}}, users...)
	var creds []credential
	var lines []string
	for _, u := range all {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		token := hex.EncodeToString(raw)
		creds = append(creds, credential{user: u, token: token})
		line := fmt.Sprintf("%s,%s,%s", token, u.name, u.name)
		if len(u.groups) > 0 {
			line += fmt.Sprintf(",\"%s\"", strings.Join(u.groups, ","))
		}
		lines = append(lines, line)
	}
	return creds, os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// writeKubeconfig writes one context per user, named after the user; "admin"
// is current.
func writeKubeconfig(path, server string, caPEM []byte, creds []credential) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kiln"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	for _, c := range creds {
		cfg.AuthInfos[c.user.name] = &clientcmdapi.AuthInfo{Token: c.token}
		cfg.Contexts[c.user.name] = &clientcmdapi.Context{Cluster: "kiln", AuthInfo: c.user.name, Namespace: "default"}
	}
	cfg.CurrentContext = "admin"
	return clientcmd.WriteToFile(*cfg, path)
}
