# The init step. Build from the repository root:  docker build -f docker/init.Dockerfile -t meshproxy/init .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/MeshProxy.Init -c Release -o /out/init

# iptables needs a distribution image (the chiseled ones carry no iptables); the .NET runtime only.
FROM mcr.microsoft.com/dotnet/runtime:10.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /out/init /app
ENV DOTNET_EnableDiagnostics=0
# iptables must run as root inside the pod's network namespace; the pod grants only NET_ADMIN and
# NET_RAW and the container exits before the app starts.
USER 0:0
ENTRYPOINT ["/app/meshproxy-init"]
