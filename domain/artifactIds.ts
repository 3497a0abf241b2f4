/**
 * The artifact store is content-addressed (`sha256:<hex>` of the bytes), so some ids are known without
 * asking it: workflow code can tell empty content from its id alone.
 */

/** The id of empty content: the checkpoint patch of a repository nothing changed. */
export const EMPTY_CONTENT_ID = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
