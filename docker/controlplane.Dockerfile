# The control plane, and the injection webhook beside it. Build from the repository root:
#   docker build -f docker/controlplane.Dockerfile -t meshproxy/controlplane .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/MeshProxy.ControlPlane -c Release -o /out/controlplane \
 && dotnet publish src/MeshProxy.Injector -c Release -o /out/injector

FROM mcr.microsoft.com/dotnet/aspnet:10.0-noble-chiseled
WORKDIR /app
COPY --from=build /out/controlplane /app/controlplane
# Until the control plane serves /inject itself, the same image runs the webhook as a second
# container of the Deployment (command: /app/injector/meshproxy-injector serve ...).
COPY --from=build /out/injector /app/injector
ENV DOTNET_EnableDiagnostics=0
USER 1337:1337
# gRPC 15010 (plaintext) and 15012 (TLS), monitoring 15014, injection webhook 15017
EXPOSE 15010 15012 15014 15017
ENTRYPOINT ["/app/controlplane/meshproxy-controlplane"]
CMD ["--config-dir", "/etc/meshproxy/config"]
