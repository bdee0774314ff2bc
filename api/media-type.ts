/** The media type of a request, without parameters ("multipart/form-data; boundary=..." → "multipart/form-data"). */
export function mediaType(request: Request): string {
  return (request.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}
